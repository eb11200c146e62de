"""Consumer lag per owned partition: from the broker's end offsets and the pipeline's progress."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Protocol

from prometheus_client import Gauge

from streams.progress import TP, Progress


class PartitionLike(Protocol):
    topic: str
    partition: int


class ConsumerView(Protocol):
    """What the tracker reads of a consumer (faust's has these)."""

    def assignment(self) -> Iterable[PartitionLike]: ...

    def highwater(self, tp: PartitionLike) -> int | None: ...

    def position(self, tp: PartitionLike) -> Awaitable[int | None]: ...


class LagTracker:
    """Keeps ``gauge`` (labels: topic, partition) at each owned partition's lag, for one topic.

    Lag counts the events after the newest one done with (published or dead-lettered), up to the end
    of the partition; a partition nothing was done in yet counts from the consumer's position. Series of
    partitions that moved to another worker are removed, so each partition is reported by its owner only.
    """

    def __init__(self, topic: str, progress: Progress, gauge: Gauge) -> None:
        self.topic = topic
        self._progress = progress
        self._gauge = gauge
        self._series: set[TP] = set()

    async def update(self, consumer: ConsumerView) -> dict[TP, tuple[int | None, int | None]]:
        """Refresh the gauge; returns ``{(topic, partition): (newest offset done with, lag)}`` for the watchdog
        (lag None: nothing fetched from the partition yet, so its end is not known here)."""
        owned = {(tp.topic, tp.partition): tp for tp in consumer.assignment() if tp.topic == self.topic}
        for key in self._series - set(owned):
            self._gauge.remove(key[0], str(key[1]))
            self._series.discard(key)
            self._progress.forget(key)
        health: dict[TP, tuple[int | None, int | None]] = {}
        for key, tp in owned.items():
            highwater = consumer.highwater(tp)
            if highwater is None:  # nothing fetched from it yet: no gauge, the watchdog asks the broker if stuck
                health[key] = (self._progress.offset(key), None)
                continue
            done = self._progress.offset(key)
            position = await consumer.position(tp) if done is None else None
            lag = self._progress.lag(key, highwater, position)
            self._gauge.labels(key[0], str(key[1])).set(lag)
            self._series.add(key)
            health[key] = (done, lag)
        return health

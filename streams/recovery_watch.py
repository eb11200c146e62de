"""Table recovery that stopped receiving its changelog records is sought back to the first one it still needs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from faust.types import TP

logger = logging.getLogger(__name__)


class Seek(Protocol):
    async def __call__(self, tp: TP, offset: int) -> None: ...


class RecoveryWatch:
    """Nudges a table recovery whose active changelog partition makes no progress.

    faust reads a changelog partition once from where its recovery starts, and drops records it has already
    fetched when a rebalance interrupts the flow (a fetch in flight when the generation changes, or one
    returned while the flow is stopped). For stream partitions it seeks back to the committed offsets; for
    the changelog of a recovery it does nothing, so a recovery whose records were dropped waits forever
    ("No event received for active tp ...", logged every 5 s) and the worker's partitions with it. Seen on
    the development machine: a worker keeping one partition after a second worker joined never finished
    recovering it (about 1 in 50 runs of the rebalance test under CPU load).

    :meth:`check` (called every few seconds) seeks each active changelog partition that is below its
    high-water mark and has not advanced for ``patience`` seconds to the offset after the last record the
    recovery applied. Re-reading is exact: recovery applies records by offset, and nothing before that
    offset is read twice.

    Args:
        recovery: faust's ``app.tables.recovery`` (``in_recovery``, ``active_offsets``, ``active_highwaters``).
        seek: ``await seek(tp, offset)``: the consumer's ``seek_wait`` (in its thread, as recovery seeks).
        on_nudge: called with the partition after each seek (a metric).
    """

    def __init__(
        self,
        recovery: object,
        seek: Seek,
        patience: float = 10.0,
        on_nudge: Callable[[TP], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._recovery = recovery
        self._seek = seek
        self._patience = patience
        self._on_nudge = on_nudge
        self._clock = clock
        self._seen: dict[TP, tuple[int | None, float]] = {}  # tp -> (offset last seen, when it was first seen)

    async def check(self) -> None:
        recovery = self._recovery
        if not getattr(recovery, "in_recovery", False):
            self._seen.clear()
            return
        now = self._clock()
        offsets: Mapping[TP, int | None] = recovery.active_offsets  # type: ignore[attr-defined]
        highwaters: Mapping[TP, int | None] = recovery.active_highwaters  # type: ignore[attr-defined]
        behind = {}  # tp -> (offset applied, high-water) of each partition the recovery still reads
        for tp, highwater in highwaters.items():
            offset = offsets.get(tp)
            if highwater is not None and highwater >= 0 and (offset is None or offset < highwater):
                behind[tp] = offset, highwater
        self._seen = {tp: seen for tp, seen in self._seen.items() if tp in behind}
        for tp, (offset, highwater) in behind.items():
            seen = self._seen.get(tp)
            if seen is None or seen[0] != offset:
                self._seen[tp] = (offset, now)
                continue
            if now - seen[1] < self._patience:
                continue
            start = offset + 1 if offset is not None and offset >= 0 else 0
            logger.warning(
                "recovery of %s[%d] has not advanced from offset %s (high-water %s) for %.0f s: "
                "reading it again from offset %d",
                tp.topic,
                tp.partition,
                offset,
                highwater,
                now - seen[1],
                start,
            )
            self._seen[tp] = (offset, now)
            try:
                await self._seek(tp, start)
            except Exception as exc:  # e.g. the partition was revoked meanwhile: the next recovery starts afresh
                logger.warning("could not seek %s[%d] to offset %d: %r", tp.topic, tp.partition, start, exc)
                continue
            if self._on_nudge is not None:
                self._on_nudge(tp)

"""How far the worker got in each partition: the newest handled offset, read for lag and by the watchdog."""

from __future__ import annotations

TP = tuple[str, int]


class Progress:
    """The newest offset handled (applied or dead-lettered) per ``(topic, partition)``."""

    def __init__(self) -> None:
        self._offsets: dict[TP, int] = {}

    def handled(self, topic: str, partition: int, offset: int) -> None:
        """Record that the event at ``offset`` is done with."""
        self._offsets[(topic, partition)] = offset

    def offset(self, tp: TP) -> int | None:
        """The newest handled offset of ``tp``, or None when nothing was handled there yet."""
        return self._offsets.get(tp)

    def lag(self, tp: TP, highwater: int, position: int | None) -> int:
        """Events of ``tp`` not yet handled: from the newest handled offset, else from the consumer position."""
        done = self._offsets.get(tp)
        start = done + 1 if done is not None else (position or 0)
        return max(0, highwater - start)

    def forget(self, tp: TP) -> None:
        """Drop a partition that moved to another worker."""
        self._offsets.pop(tp, None)

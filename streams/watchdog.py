"""The stall watchdog: a worker that has lag and makes no progress exits, so its supervisor restarts it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from streams.progress import TP

logger = logging.getLogger(__name__)


class Watchdog:
    """Decides, from outside the event loop, whether the worker is stuck.

    The event loop reports to it every few seconds (:meth:`beat`) with each assigned partition's newest
    handled offset and lag. The worker is stuck when the loop stops reporting, or when a partition has had
    lag and no progress for ``timeout`` seconds outside a rebalance or table recovery while the broker
    answers (an unreachable broker is an outage, not a stall: the worker resumes when it returns). A
    partition the consumer has never fetched from has no known lag: after ``timeout`` seconds without
    progress, ``events_waiting`` asks the broker whether events wait there beyond the group's committed offset.

    Args:
        timeout: seconds without progress that count as a stall.
        broker_answers: a blocking check that the Kafka cluster is reachable.
        clock: monotonic seconds (tests pass a fake).
        events_waiting: blocking: which of these partitions hold events beyond the group's committed offset
            (None: partitions never fetched from are not checked).
    """

    def __init__(
        self,
        timeout: float,
        broker_answers: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        events_waiting: Callable[[list[TP]], set[TP]] | None = None,
    ) -> None:
        self.timeout = timeout
        self._broker_answers = broker_answers
        self._events_waiting = events_waiting
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat: float | None = None
        self._since: dict[TP, float] = {}  # when each partition last made progress or had no lag
        self._offsets: dict[TP, int | None] = {}
        self._unfetched: set[TP] = set()  # partitions whose lag is not known (never fetched from)

    def beat(self, partitions: Mapping[TP, tuple[int | None, int | None]], busy: bool) -> None:
        """Called on the event loop: ``partitions`` maps each assigned partition to (newest handled offset, lag);
        the lag is None for a partition the consumer has not fetched from yet.

        Args:
            busy: a rebalance or table recovery is in progress (no processing is expected).
        """
        now = self._clock()
        with self._lock:
            self._last_beat = now
            for tp in set(self._since) - set(partitions):
                del self._since[tp]
                self._offsets.pop(tp, None)
            self._unfetched = {tp for tp, (_, lag) in partitions.items() if lag is None}
            for tp, (offset, lag) in partitions.items():
                moved = tp not in self._offsets or self._offsets[tp] != offset
                if busy or moved or (lag is not None and lag <= 0):
                    self._since[tp] = now
                self._offsets[tp] = offset

    def stalled(self) -> str | None:
        """Why the worker is stuck, or None. Blocking (it may ask the broker): call it from a thread."""
        now = self._clock()
        with self._lock:
            if self._last_beat is None:
                return None  # not started yet
            if now - self._last_beat > self.timeout:
                return f"the event loop has not run for {now - self._last_beat:.0f}s"
            stuck = sorted(tp for tp, since in self._since.items() if now - since > self.timeout)
            unfetched = [tp for tp in stuck if tp in self._unfetched]
            lags = dict(self._offsets)
        if not stuck:
            return None
        if not self._broker_answers():
            logger.warning("no progress on %s, but the Kafka broker does not answer: waiting for it", _names(stuck))
            self._restart(stuck, now)
            return None
        if unfetched:
            idle = set(unfetched)
            if self._events_waiting is not None:
                try:
                    idle -= self._events_waiting(unfetched)
                except Exception as exc:  # the broker went away meanwhile: an outage, not a stall
                    logger.warning("cannot tell whether events wait on %s (%s)", _names(unfetched), exc)
            self._restart(sorted(idle), now)
            stuck = [tp for tp in stuck if tp not in idle]
            if not stuck:
                return None
        return (
            f"no progress for more than {self.timeout:.0f}s on {_names(stuck)} although events are waiting "
            f"(newest handled offsets: {', '.join(f'{t}[{p}]={lags.get((t, p))}' for t, p in stuck)})"
        )

    def _restart(self, tps: list[TP], now: float) -> None:
        """Count ``tps`` as fine as of ``now`` (looked at again after another timeout)."""
        with self._lock:
            for tp in tps:
                if tp in self._since:
                    self._since[tp] = now

    def watch(self, on_stall: Callable[[str], None], interval: float = 1.0) -> threading.Thread:
        """Check every ``interval`` seconds in a daemon thread; call ``on_stall(reason)`` once when stuck."""

        def run() -> None:
            while True:
                time.sleep(interval)
                try:
                    reason = self.stalled()
                except Exception:  # the watchdog must outlive its own bugs
                    logger.exception("stall check failed")
                    continue
                if reason is not None:
                    on_stall(reason)
                    return

        thread = threading.Thread(target=run, name="streamrec-watchdog", daemon=True)
        thread.start()
        return thread


def _names(tps: list[TP]) -> str:
    return ", ".join(f"{topic}[{partition}]" for topic, partition in tps)

"""Bounded logging: a record from one line of code is written at most a few times per window."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RepeatFilter(logging.Filter):
    """Lets through ``burst`` records per call site (logger, file, line) and ``window`` seconds.

    The rest are counted, and the next record let through says how many were left out. During a broker
    outage the Kafka clients log each failed attempt; this keeps that to a few lines per window.
    """

    def __init__(self, window: float = 10.0, burst: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._sites: dict[tuple[str, str, int], list] = {}  # site -> [window start, passed, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        site = (record.name, record.pathname, record.lineno)
        now = self._clock()
        with self._lock:
            state = self._sites.get(site)
            if state is None or now - state[0] >= self.window:
                suppressed = state[2] if state is not None else 0
                self._sites[site] = [now, 1, 0]
            elif state[1] < self.burst:
                state[1] += 1
                suppressed = 0
            else:
                state[2] += 1
                return False
        if suppressed:
            record.msg = f"{record.getMessage()} [{suppressed} more like this in the last {self.window:.0f}s not shown]"
            record.args = ()
        return True


def bound_repeats(logger: logging.Logger, window: float = 10.0, burst: int = 3) -> None:
    """Add a :class:`RepeatFilter` to every handler of ``logger`` (once)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter(window, burst))

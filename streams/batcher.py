"""Adaptive batching: a batch leaves as soon as the pipeline has room, with every event waiting for it.

The rule (README, *How the worker works*):

- No event waits for company. A batch is formed when the pipeline can take one (fewer than
  ``STREAMREC_BATCHES_IN_FLIGHT`` batches between ingestion and acknowledgement) and at least one event
  is waiting; it takes every waiting event, up to the batch cap. At low load that is one event: the
  latency of the per-event path.
- Under load the pipeline is busy, events wait for room, and the next batch takes them all: batches grow
  with the load, which is what keeps up with it.
- The cap is ``STREAMREC_MAX_BATCH``, lowered while one model call for that many users would take more
  than half of ``STREAMREC_LATENCY_BUDGET_MS`` (the model's cost per user is measured as it runs).
- A full batch does not wait for the model: when the next batch's worth of events is already waiting, it is
  ingested while the model scores the one before (within ``STREAMREC_BATCHES_IN_FLIGHT``), so the model does
  not sit idle while the event loop ingests.
- Catching up: once batches have been leaving events behind for more than half the budget (the buffer has
  not emptied since), batches take up to ``STREAMREC_MAX_BATCH`` until it empties. Those events are late
  already, and a larger batch costs less per user, so the backlog clears in a few batches instead of lasting
  for seconds at a rate the cap holds below the load.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

EWMA_WEIGHT = 0.2  # of the newest measurement in the running cost per user


class Batcher(Generic[T]):
    """Buffers items read from a stream (bounded) and hands out batches of all that wait.

    Args:
        max_batch: the most items in one batch.
        budget_s: the latency budget; a batch's model call should take at most half of it.
        capacity: the most items held; reading pauses beyond it (backpressure to the consumer).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        max_batch: int,
        budget_s: float,
        capacity: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_batch = max_batch
        self.budget_s = budget_s
        self._clock = clock
        self._behind_since: float | None = None  # when a batch last left items behind, while it has not emptied
        self._capacity = capacity or 4 * max_batch
        self._items: deque[T] = deque()
        self._waiting = asyncio.Event()  # items are waiting
        self._room = asyncio.Event()  # the buffer has room
        self._room.set()
        self._per_item_s: float | None = None  # model seconds per user, measured
        self._error: BaseException | None = None
        self._ended = False

    @property
    def cap(self) -> int:
        """The most items the next batch may take."""
        if not self._per_item_s:
            return self.max_batch
        return max(1, min(self.max_batch, int(self.budget_s / 2 / self._per_item_s)))

    def _limit(self, now: float) -> int:
        """The most items the next batch takes: :attr:`cap`, or ``max_batch`` while catching up."""
        if self._behind_since is not None and now - self._behind_since > self.budget_s / 2:
            return self.max_batch
        return self.cap

    def has_full_batch(self) -> bool:
        """True when a batch of the most items the next one may take is already waiting: waiting for the model
        to be idle would not make it larger."""
        return len(self._items) >= self._limit(self._clock())

    def observe(self, items: int, seconds: float) -> None:
        """Tell the batcher how long the model took for ``items`` users."""
        if items <= 0 or seconds <= 0:
            return
        sample = seconds / items
        self._per_item_s = (
            sample if self._per_item_s is None else (EWMA_WEIGHT * sample + (1 - EWMA_WEIGHT) * self._per_item_s)
        )

    async def put(self, item: T) -> None:
        """Add one item; returns once the buffer has room for the next (backpressure on whoever puts)."""
        self._items.append(item)
        self._waiting.set()
        if len(self._items) >= self._capacity:
            self._room.clear()
            await self._room.wait()

    async def read(self, source: AsyncIterable[T]) -> None:
        """Move items from ``source`` into the buffer until it ends (run it as a task).

        If reading fails, :meth:`next_batch` raises the error (nothing is lost silently).
        """
        try:
            async for item in source:
                await self.put(item)
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            self._ended = True
            self._waiting.set()

    async def next_batch(self) -> list[T]:
        """Every waiting item, up to :attr:`cap` (up to ``max_batch`` while catching up); waits until there is at
        least one.

        Returns an empty list once the stream has ended and everything was handed out (the worker stops);
        raises what made reading fail.
        """
        while not self._items:
            if self._error is not None and not isinstance(self._error, asyncio.CancelledError):
                raise self._error
            if self._ended:
                return []
            self._waiting.clear()
            await self._waiting.wait()
        now = self._clock()
        take = min(self._limit(now), len(self._items))
        batch = [self._items.popleft() for _ in range(take)]
        if not self._items:
            self._behind_since = None
        elif self._behind_since is None:
            self._behind_since = now
        if len(self._items) < self._capacity:
            self._room.set()
        return batch

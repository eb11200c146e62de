"""The stage after ingestion: score in a thread while the next batch is ingested; publish and acknowledge in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from serving.engine import Engine
from serving.registry import ModelRegistry
from streams.pipeline import Batch, Pipeline, Scored

Fatal = Callable[[str, BaseException], None]


class Publisher:
    """Keeps up to ``in_flight`` ingested batches moving: scoring, publishing, then acknowledging.

    A batch is scored by one model call in ``executor`` as soon as it is submitted, so the event loop ingests
    the next batch meanwhile. Batches are published and acknowledged in the order they were submitted, and a
    batch is acknowledged (its offsets may then be committed) only after its recommendations and dead letters
    are with the producer and ``drain`` has returned. No more than ``in_flight`` batches are
    on their way; :meth:`reserve` waits for room (backpressure: memory stays bounded, and meanwhile the
    next batch fills).

    Args:
        fatal: called when publishing fails (the worker exits rather than stop silently).
        drain: awaited after a batch is published, before it is acknowledged.
        on_scored: told (users, seconds) after each model call.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        registry: ModelRegistry,
        executor: Executor,
        fatal: Fatal,
        in_flight: int = 2,
        drain: Callable[[], Awaitable[None]] | None = None,
        on_scored: Callable[[int, float], None] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._registry = registry
        self._executor = executor
        self._fatal = fatal
        self._drain = drain
        self._on_scored = on_scored
        self._slots = asyncio.Semaphore(in_flight)
        self._queue: asyncio.Queue[tuple[Batch, Engine, asyncio.Future, Callable[[], None]]] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._scoring = 0  # batches submitted and not yet scored
        self._model_idle: asyncio.Event | None = None

    async def reserve(self, full: Callable[[], bool] | None = None) -> None:
        """Wait until fewer than ``in_flight`` batches are on their way and the model is idle; then :meth:`submit`.

        Waiting for the model lets the next batch gather every event that arrives while the current one is
        scored; when the model is idle a batch goes at once, however small. When ``full()`` says a whole batch
        is waiting already, there is nothing to gather: the next batch is ingested while the model works.
        """
        await self._slots.acquire()
        if self._model_idle is None:
            self._model_idle = asyncio.Event()
            self._model_idle.set()
        if full is not None and full():
            return
        await self._model_idle.wait()

    def submit(self, batch: Batch, ack: Callable[[], None]) -> None:
        """Start scoring ``batch`` (after :meth:`reserve`) and queue it for publishing; ``ack`` acknowledges it."""
        loop = asyncio.get_running_loop()
        engine = self._registry.current  # one model per batch, even if a swap happens meanwhile
        shadow = self._registry.shadow
        updates = list(batch.updates.values())
        if updates:
            scored = loop.run_in_executor(self._executor, self._score, engine, shadow, updates)
            self._scoring += 1
            if self._model_idle is not None:
                self._model_idle.clear()
            scored.add_done_callback(self._scored)
        else:
            scored = loop.create_future()
            scored.set_result(Scored([]))
        self._queue.put_nowait((batch, engine, scored, ack))
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def _scored(self, _: asyncio.Future) -> None:
        self._scoring -= 1
        if self._scoring == 0 and self._model_idle is not None:
            self._model_idle.set()

    def _score(self, engine: Engine, shadow: Engine | None, updates: list) -> Scored:
        started = time.perf_counter()
        results = self._pipeline.score(engine, updates, shadow)
        if self._on_scored is not None:
            self._on_scored(len(updates), time.perf_counter() - started)
        return results

    async def _run(self) -> None:
        while True:
            batch, engine, scored, ack = await self._queue.get()
            try:
                results = await scored
                await self._pipeline.publish(batch, engine, results)
                if self._drain is not None:
                    await self._drain()
                ack()
                self._pipeline.done(batch)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # nothing may end this task silently: the agent would hang
                self._fatal("publishing a batch failed", exc)
                raise
            finally:
                self._slots.release()

    async def close(self) -> None:
        """Stop publishing (on shutdown or a rebalance; unacknowledged events are replayed by their next owner)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

"""Hot swap: poll the model root for a newer version, and keep the model metrics in step."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from serving.registry import REJECTED, SWAPPED, ModelRegistry
from streams.metrics import Metrics


class ModelWatch:
    """Runs :meth:`ModelRegistry.poll` off the event loop and reports swaps in ``streamrec_model_*``."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics, executor: Executor) -> None:
        self._registry = registry
        self._metrics = metrics
        self._executor = executor
        metrics.model_info.labels(registry.current.version).set(1)
        # read at each scrape, from whichever engine is live then
        metrics.new_item_share.set_function(lambda: float(registry.current.new_mix()[0]))
        metrics.new_item_temperature.set_function(lambda: float(registry.current.new_mix()[1]))

    async def poll(self) -> str:
        """One look at the model root (and the shadow's); returns the live model's outcome (swapped, rejected,
        unchanged)."""
        previous = self._registry.current.version
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(self._executor, self._registry.poll)
        await loop.run_in_executor(self._executor, self._registry.poll_shadow)
        if outcome == SWAPPED:
            self._metrics.model_info.remove(previous)
            self._metrics.model_info.labels(self._registry.current.version).set(1)
        if outcome in (SWAPPED, REJECTED):
            self._metrics.model_swaps.labels(outcome).inc()
        return outcome

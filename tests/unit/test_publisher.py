"""The publisher's room for the next batch: it waits for the model unless a whole batch is waiting already."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from streams.pipeline import Batch, Scored
from streams.publisher import Publisher
from tests.fakes import FakeRegistry


class _BlockingPipeline:
    """Scores only once ``release`` is set (the model is busy until then)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def score(self, engine, updates, shadow=None):
        self.release.wait(5)
        return Scored([[] for _ in updates])

    async def publish(self, batch, engine, scored):
        return len(batch.updates)

    def done(self, batch):
        pass


def test_the_next_batch_waits_for_the_model_unless_a_full_one_is_waiting():
    async def scenario():
        pipeline = _BlockingPipeline()
        executor = ThreadPoolExecutor(max_workers=1)
        failures = []
        acked = []
        publisher = Publisher(pipeline, FakeRegistry(object()), executor, lambda *a: failures.append(a), 3)
        await publisher.reserve()  # the model is idle: at once
        publisher.submit(Batch(updates={"u1": object()}), lambda: acked.append(1))  # the model is now busy

        partial = asyncio.ensure_future(publisher.reserve(lambda: False))
        await asyncio.sleep(0.05)
        assert not partial.done()  # a partial batch waits for the model, gathering events meanwhile
        await asyncio.wait_for(publisher.reserve(lambda: True), 0.5)  # a full one is ingested meanwhile

        pipeline.release.set()
        await asyncio.wait_for(partial, 2)  # the model is idle again
        for _ in range(200):  # the batch is then published and acknowledged
            if acked:
                break
            await asyncio.sleep(0.01)
        assert acked == [1] and failures == []
        await publisher.close()
        executor.shutdown(wait=True)

    asyncio.run(scenario())

"""Adaptive batching: no waiting for company, batches grow while the pipeline is busy, capped by the budget
unless a backlog has lasted half of it."""

import asyncio

from streams.batcher import Batcher


async def _source(items, gate=None):
    for item in items:
        if gate is not None:
            await gate.wait()
        yield item


def test_a_lone_event_goes_at_once_and_waiting_events_go_together():
    async def scenario():
        batcher = Batcher(max_batch=100, budget_s=1.0)
        gate = asyncio.Event()
        reader = asyncio.ensure_future(batcher.read(_source(range(5), gate)))
        gate.set()
        await asyncio.sleep(0.01)  # five events arrived while the pipeline was busy
        assert await batcher.next_batch() == [0, 1, 2, 3, 4]
        gate.clear()
        reader.cancel()
        lone = Batcher(max_batch=100, budget_s=1.0)
        reader = asyncio.ensure_future(lone.read(_source(["only"])))
        assert await asyncio.wait_for(lone.next_batch(), 1) == ["only"]  # no waiting for company
        await reader
        assert await lone.next_batch() == []  # the stream ended

    asyncio.run(scenario())


def test_the_cap_keeps_a_model_call_within_half_the_budget():
    batcher = Batcher(max_batch=256, budget_s=0.05)
    assert batcher.cap == 256  # nothing measured yet
    batcher.observe(100, 0.01)  # 0.1 ms a user: 256 users take 25.6 ms, within 25 ms? no
    assert batcher.cap == 250
    batcher.observe(10, 0.01)  # the model got slower (1 ms a user, smoothed)
    assert 1 <= batcher.cap < 250


def test_a_backlog_older_than_half_the_budget_is_taken_in_full_batches():
    async def scenario():
        now = [0.0]
        batcher = Batcher(max_batch=100, budget_s=0.05, capacity=1000, clock=lambda: now[0])
        batcher.observe(10, 0.01)  # 1 ms a user: the cap is 25
        assert batcher.cap == 25
        for item in range(60):
            await batcher.put(item)
        assert await batcher.next_batch() == list(range(25))  # capped; 35 left behind at t = 0
        now[0] = 0.02
        assert len(await batcher.next_batch()) == 25  # behind for 20 ms: still within half the budget
        for item in range(60, 160):
            await batcher.put(item)
        now[0] = 0.03
        assert await batcher.next_batch() == list(range(50, 150))  # behind for 30 ms: a full batch
        assert await batcher.next_batch() == list(range(150, 160))  # the rest; the buffer is empty again
        for item in range(160, 200):
            await batcher.put(item)
        now[0] = 0.5
        assert batcher.has_full_batch()  # 40 waiting, the cap is 25: nothing to wait for
        assert len(await batcher.next_batch()) == 25  # a new backlog starts capped
        assert batcher.cap == 25
        now[0] = 0.6
        assert not batcher.has_full_batch()  # 15 left: catching up (after 100 ms behind) takes up to 100

    asyncio.run(scenario())


def test_reading_pauses_when_the_buffer_is_full_and_a_failure_surfaces():
    async def failing():
        yield 1
        raise RuntimeError("consumer broke")

    async def scenario():
        batcher = Batcher(max_batch=2, budget_s=1.0, capacity=3)
        reader = asyncio.ensure_future(batcher.read(_source(range(10))))
        await asyncio.sleep(0.01)
        assert len(batcher._items) == 3 and not reader.done()  # backpressure
        assert await batcher.next_batch() == [0, 1]
        reader.cancel()
        broken = Batcher(max_batch=2, budget_s=1.0)
        task = asyncio.ensure_future(broken.read(failing()))
        assert await broken.next_batch() == [1]
        try:
            await broken.next_batch()
        except RuntimeError as exc:
            assert "consumer broke" in str(exc)
        else:
            raise AssertionError("the failure must reach the agent")
        assert task.done()

    asyncio.run(scenario())

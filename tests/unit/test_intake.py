"""The intake: records go from the consumer into the agent's buffer in order, tracked until acknowledged; records of
an older generation or fetched while the flow is stopped are acknowledged unprocessed; none overtakes the agent."""

import asyncio
from types import SimpleNamespace

from faust.types.tuples import ConsumerMessage

from streams.batcher import Batcher
from streams.intake import Intake


class FakeConsumer:
    def __init__(self):
        self.unacked = set()
        self.acked = []

    def ack(self, message):
        message.acked = True
        self.unacked.discard(message)
        self.acked.append(message.offset)
        return True


def fake_app(generation=3, active=True):
    flow = SimpleNamespace(active=active)
    return SimpleNamespace(
        consumer=FakeConsumer(),
        consumer_generation_id=generation,
        flow_control=SimpleNamespace(is_active=lambda: flow.active),
        flow=flow,
    )


def message(offset, generation=3, partition=0):
    return ConsumerMessage(
        "events", partition, offset, 0.0, 0, None, b"u1", b"v%d" % offset, None, generation_id=generation
    )


def test_records_wait_for_the_agent_then_arrive_in_order_tracked_until_acknowledged():
    async def scenario():
        app = fake_app()
        intake = Intake(app)
        first = asyncio.ensure_future(intake(message(0)))
        await asyncio.sleep(0.01)
        assert not first.done()  # no buffer yet: the record waits rather than taking another path
        batcher = Batcher(max_batch=10, budget_s=1.0)
        intake.attach(batcher)
        await asyncio.wait_for(first, 1)
        await intake(message(1))
        messages = await batcher.next_batch()
        assert [(m.offset, m.value) for m in messages] == [(0, b"v0"), (1, b"v1")]
        assert {m.offset for m in app.consumer.unacked} == {0, 1}  # a rebalance or shutdown waits for them
        assert app.consumer.acked == []
        messages[1].ack(app.consumer)
        messages[0].ack(app.consumer)
        assert sorted(app.consumer.acked) == [0, 1] and not app.consumer.unacked

    asyncio.run(scenario())


def test_records_of_an_older_generation_or_a_stopped_flow_are_acknowledged_unprocessed():
    async def scenario():
        app = fake_app(generation=4)
        intake = Intake(app)
        batcher = Batcher(max_batch=10, budget_s=1.0)
        intake.attach(batcher)
        await intake(message(0, generation=3))  # fetched before the rebalance
        app.flow.active = False
        await intake(message(1, generation=4))  # fetched while the rebalance stops the flow
        app.flow.active = True
        await intake(message(2, generation=4))
        assert app.consumer.acked == [0, 1]
        assert [m.offset for m in await batcher.next_batch()] == [2]

    asyncio.run(scenario())


def test_a_full_buffer_holds_the_consumer_back():
    async def scenario():
        app = fake_app()
        intake = Intake(app)
        batcher = Batcher(max_batch=2, budget_s=1.0, capacity=2)
        intake.attach(batcher)
        await intake(message(0))
        held = asyncio.ensure_future(intake(message(1)))  # fills the buffer: the call returns once there is room
        await asyncio.sleep(0.01)
        assert not held.done()
        assert [m.offset for m in await batcher.next_batch()] == [0, 1]
        await asyncio.wait_for(held, 1)
        intake.detach()
        late = asyncio.ensure_future(intake(message(2)))
        await asyncio.sleep(0.01)
        assert not late.done()  # the agent stopped: records wait for the next one
        late.cancel()

    asyncio.run(scenario())

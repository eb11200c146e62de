"""The real agent under Faust's test context (memory table, captured sends, a fake model)."""

import asyncio
import json

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streams.app import TABLE_NAME, build_app
from streams.metrics import Metrics
from streams.sequences import is_watermark_key, watermark_key, watermark_of
from streams.settings import Settings
from tests.fakes import FakeEngine, FakeRegistry, event


@pytest.fixture()
def harness():
    settings = Settings(app_id="agent-test", max_batch=8, top_k=3, max_len=4, metrics_port=0, model_poll_seconds=0)
    engine = FakeEngine([f"i{n}" for n in range(10)])
    sent = {"recs": [], "dlq": []}

    async def send_recs(records):
        sent["recs"].extend((key, json.loads(value)) for key, value in records)

    async def send_dlq(key, value):
        sent["dlq"].append((key, json.loads(value)))

    metrics = Metrics.create(CollectorRegistry())
    failures = []
    app, pipeline = build_app(
        settings,
        FakeRegistry(engine),
        metrics,
        sinks=(send_recs, send_dlq),
        on_fatal=lambda reason, exc: failures.append((reason, exc)),
    )
    sent["failures"] = failures
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    return app, engine, sent, metrics


async def wait_for(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def test_agent_updates_table_batches_and_publishes(harness):
    app, engine, sent, metrics = harness
    agent = app.agents["recommend"]
    table = app.tables[TABLE_NAME]

    async def scenario():
        async with agent.test_context() as ctx:
            for offset, (user, item) in enumerate([("u1", "i1"), ("u2", "i2"), ("u1", "i3"), ("u1", "i4")]):
                await ctx.put(event(user, item, event_id=f"e{offset}"), key=user.encode(), partition=0)
            await ctx.put(b"{not json", key=b"u3", partition=0)
            await ctx.put(event("u2", "i5"), key=b"u2", partition=0)
            await wait_for(
                lambda: (
                    any(
                        r["user_id"] == "u2"
                        and r["event_ts"]
                        and "i5" not in [i["item_id"] for i in r["items"]]
                        and len(sent["recs"]) >= 2
                        for _, r in sent["recs"]
                    )
                    and sent["dlq"]
                )
            )

    asyncio.run(scenario())
    u1, u2 = orjson.loads(table[b"u1"]), orjson.loads(table[b"u2"])  # the table holds JSON bytes
    sequence = lambda value: {k: v for k, v in value.items() if k in ("items", "offset")}  # noqa: E731
    assert sequence(u1) == {"items": ["i1", "i3", "i4"], "offset": 3}
    assert sequence(u2) == {"items": ["i2", "i5"], "offset": 5}
    # a list served for the sequence is written with the partition's next batch, for that very sequence only
    assert u1.get("served", {"o": 3})["o"] == 3 and u2.get("served", {"o": 5})["o"] == 5
    assert sorted(k for k in table if not is_watermark_key(k)) == [b"u1", b"u2"], list(table.keys())
    assert watermark_of(table[watermark_key(0)]) is not None  # the partition's watermark is in the table
    # every scored sequence is a user's newest, and no user appears twice in one call
    for call in engine.calls:
        assert len(call) == len(set(call))
    last_u1 = [r for k, r in sent["recs"] if r["user_id"] == "u1"][-1]
    assert last_u1["trigger_event_id"] == "e3"
    assert all(i["item_id"] not in ("i1", "i3", "i4") for i in last_u1["items"])
    assert last_u1["model_version"] == "fake-v1"
    ((key, dead),) = sent["dlq"]
    assert key == b"u3" and dead["reason"] == "not_json" and dead["source"]["offset"] == 4
    assert metrics.events_invalid.labels("not_json")._value.get() == 1
    assert metrics.events.labels("click")._value.get() == 5
    batches = metrics.batch_seconds.collect()[0].samples
    assert next(x.value for x in batches if x.name.endswith("_count")) >= 2  # every published batch is timed
    assert next(x.value for x in batches if x.name.endswith("_sum")) > 0
    assert sent["failures"] == [], "the agent neither failed nor stopped on its own"

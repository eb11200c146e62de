"""The pipeline without Kafka or faust: replays, skipped offsets, failures and dead letters."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import CollectorRegistry

from streams.dead_letters import DeadLetter
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.sequences import Update, watermark_key, watermark_of
from streams.settings import Settings
from streams.source import Source
from tests.fakes import FakeEngine, FakeRegistry, Sink, event


class Harness:
    def __init__(self, fetch=None, table=None):
        self.settings = Settings(max_len=5, top_k=3, metrics_port=0)
        self.table = {} if table is None else table
        self.recs, self.dlq = Sink(), Sink()
        self.metrics = Metrics.create(CollectorRegistry())
        self.fetched = []
        self.log = {}  # offset -> (key, value): the partition as the broker holds it

        def fetch_from_log(topic, partition, start, end):
            self.fetched.append((start, end))
            return [(source(o, k), v) for o, (k, v) in sorted(self.log.items()) if start <= o < end]

        self.pipeline = Pipeline(
            self.settings,
            FakeRegistry(FakeEngine([f"i{n}" for n in range(20)])),
            self.metrics,
            self.table,
            self.recs,
            self.dlq,
            ThreadPoolExecutor(1),
            fetch=fetch or fetch_from_log,
            fetch_executor=ThreadPoolExecutor(1),
        )

    def put(self, offset, user, item, event_id=None):
        self.log[offset] = (user.encode(), event(user, item, event_id=event_id))

    async def handle(self, *offsets):
        outcomes = []
        for offset in offsets:
            key, value = self.log[offset]
            outcomes.extend(await self.pipeline.ingest(source(offset, key), value))
        await self.pipeline.publish_batch(outcomes)
        return outcomes


def source(offset, key=b"u1"):
    return Source("events", 0, offset, key, 1.0)


def run(coro):
    return asyncio.run(coro)


def test_a_replayed_event_rewrites_the_value_and_only_the_newest_publishes():
    h = Harness()
    for offset, item in enumerate(["a", "b", "c"]):
        h.put(offset, "u1", item, event_id=f"e{offset}")
    run(h.handle(0, 1, 2))
    writes = []
    h.table = _Recording(h.table, writes)
    h.pipeline.table = h.table
    outcomes = run(h.handle(1, 2))  # a replay after a crash: both were applied already
    assert h.table[b"u1"]["items"] == ["a", "b", "c"], "nothing applied twice"
    assert [w for w in writes if w == b"u1"] == [b"u1", b"u1"], "each replay re-sends the value to the changelog"
    assert outcomes[0] is None, "an older event's list is not re-published: its sequence is gone"
    assert isinstance(outcomes[1], Update) and outcomes[1].items == ("a", "b", "c") and outcomes[1].event_id == "e2"
    assert h.recs.records[-1][1]["trigger_event_id"] == "e2"


def test_an_internal_failure_dead_letters_the_event_and_the_partition_goes_on():
    h = Harness()
    h.put(0, "u1", "a")
    h.put(1, "u2", "b")
    h.table[b"u1"] = {"items": "not a list", "offset": "oops"}  # a value the pipeline cannot read
    outcomes = run(h.handle(0, 1))
    assert isinstance(outcomes[0], DeadLetter) and outcomes[0].source.offset == 0
    assert h.dlq.records[0][1]["reason"] == "internal_error" and "ValueError" in h.dlq.records[0][1]["detail"]
    assert isinstance(outcomes[1], Update) and h.table[b"u2"]["items"] == ["b"]
    assert h.metrics.events_invalid.labels("internal_error")._value.get() == 1


def test_a_failed_dead_letter_is_sent_again_before_the_batch_ends():
    h = Harness()
    h.log[0] = (b"u1", b"{broken")
    h.dlq.fail = 2
    run(h.handle(0))
    assert len(h.dlq.records) == 3 and all(r["reason"] == "not_json" for _, r in h.dlq.records)


def test_offsets_the_consumer_skipped_are_read_again_and_handled_first():
    h = Harness()
    for offset in range(6):
        h.put(offset, f"u{offset % 2}", f"i{offset}", event_id=f"e{offset}")
    run(h.handle(0, 1))
    outcomes = run(h.handle(5))  # 2, 3 and 4 never reached the worker
    assert h.fetched == [(2, 5)]
    assert [o.event_id for o in outcomes] == ["e2", "e3", "e4", "e5"]
    assert h.table[b"u0"]["items"] == ["i0", "i2", "i4"] and h.table[b"u1"]["items"] == ["i1", "i3", "i5"]
    assert h.metrics.events_refetched._value.get() == 3


def test_the_watermark_survives_in_the_table_and_catches_skips_after_a_restart():
    h = Harness()
    for offset in range(4):
        h.put(offset, "u1", f"i{offset}")
    run(h.handle(0))
    assert watermark_of(h.table[watermark_key(0)]) == 0
    restarted = Harness(table=h.table)  # e.g. a new worker that restored the table from the changelog
    restarted.log = h.log
    run(restarted.handle(3))  # its consumer started past 1 and 2
    assert restarted.fetched == [(1, 3)]
    assert restarted.table[b"u1"]["items"] == ["i0", "i1", "i2", "i3"]


def test_a_skip_is_retried_while_the_broker_cannot_be_read(monkeypatch):
    calls = []

    def flaky(topic, partition, start, end):
        calls.append(start)
        if len(calls) < 3:
            raise TimeoutError("broker away")
        return []

    monkeypatch.setattr("streams.pipeline.asyncio.sleep", _no_sleep)
    h = Harness(fetch=flaky)
    h.put(0, "u1", "a")
    h.put(9, "u1", "b")
    run(h.handle(0))
    run(h.handle(9))
    assert calls == [1, 1, 1] and h.table[b"u1"]["items"] == ["a", "b"]


async def _no_sleep(_):
    return None


class _Recording(dict):
    def __init__(self, data, writes):
        super().__init__(data)
        self.writes = writes

    def __setitem__(self, key, value):
        self.writes.append(key)
        super().__setitem__(key, value)


@pytest.mark.parametrize("bad", [None, b"", b"\xff", b"[]"])
def test_hostile_values_never_raise(bad):
    h = Harness()
    h.log[0] = (b"u1", bad)
    outcomes = run(h.handle(0))
    assert isinstance(outcomes[0], DeadLetter)

"""The pipeline without Kafka or faust: batches, replays, skipped offsets, failures and dead letters."""

import asyncio
import math

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streams.grading import ServedLists, in_shadow_share
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.sequences import watermark_key, watermark_of
from streams.settings import Settings
from streams.source import Source
from tests.fakes import FakeEngine, FakeRegistry, Sink, event


class Recording(dict):
    """A table that remembers which keys were written; its values are bytes, as in the worker's table."""

    def value(self, key):
        """The value as the pipeline wrote it, decoded."""
        return orjson.loads(self[key])

    def __init__(self, data=()):
        super().__init__(data)
        self.writes = []

    def __setitem__(self, key, value):
        self.writes.append(key)
        super().__setitem__(key, value)


class Harness:
    def __init__(self, fetch=None, table=None):
        self.settings = Settings(max_len=5, top_k=3, metrics_port=0)
        self.table = Recording() if table is None else table
        self.recs, self.dlq = Sink(), Sink()
        self.metrics = Metrics.create(CollectorRegistry())
        self.fetched = []
        self.log = {}  # offset -> (key, value): the partition as the broker holds it
        self.engine = FakeEngine([f"i{n}" for n in range(20)])

        def fetch_from_log(topic, partition, start, end):
            self.fetched.append((start, end))
            return [(source(o, k), v) for o, (k, v) in sorted(self.log.items()) if start <= o < end]

        self.pipeline = Pipeline(
            self.settings,
            FakeRegistry(self.engine),
            self.metrics,
            self.table,
            self.recs.many,
            self.dlq,
            fetch=fetch or fetch_from_log,
        )

    def put(self, offset, user, item, event_id=None):
        self.log[offset] = (user.encode(), event(user, item, event_id=event_id))

    async def handle(self, *offsets):
        """Ingest the offsets as one batch, score and publish it."""
        batch = await self.pipeline.ingest([(source(o, self.log[o][0]), self.log[o][1]) for o in offsets])
        updates = list(batch.updates.values())
        await self.pipeline.publish(batch, self.engine, self.pipeline.score(self.engine, updates))
        self.pipeline.done(batch)
        return batch


def source(offset, key=b"u1"):
    return Source("events", 0, offset, key, 1.0)


def run(coro):
    return asyncio.run(coro)


def test_a_batch_reads_and_writes_each_user_once_and_publishes_each_user_once():
    h = Harness()
    for offset, (user, item) in enumerate([("u1", "a"), ("u2", "b"), ("u1", "c"), ("u1", "d")]):
        h.put(offset, user, item, event_id=f"e{offset}")
    batch = run(h.handle(0, 1, 2, 3))
    assert h.table.value(b"u1") == {
        "items": ["a", "c", "d"],
        "offset": 3,
        "types": ["click", "click", "click"],
        "scenarios": ["", "", ""],
    }
    assert h.table.value(b"u2")["items"] == ["b"]
    assert sorted(k for k in h.table.writes if not k.startswith(b"\xff")) == [b"u1", b"u2"]
    assert [u.event_id for u in batch.updates.values()] == ["e1", "e3"]
    assert [r["trigger_event_id"] for _, r in h.recs.records] == ["e1", "e3"]
    assert h.engine.calls == [[("b",), ("a", "c", "d")]]
    assert h.pipeline.progress.offset(("events", 0)) == 3


def test_a_replayed_event_rewrites_the_value_and_only_the_newest_publishes():
    h = Harness()
    for offset, item in enumerate(["a", "b", "c"]):
        h.put(offset, "u1", item, event_id=f"e{offset}")
    run(h.handle(0, 1, 2))
    h.table.writes.clear()
    batch = run(h.handle(1))  # a replay after a crash of an older event: nothing to publish
    assert h.table.value(b"u1")["items"] == ["a", "b", "c"], "nothing applied twice"
    assert b"u1" in h.table.writes, "a replay re-sends the value to the changelog"
    assert batch.updates == {}, "an older event's list is not re-published: its sequence is gone"
    batch = run(h.handle(2))  # the newest applied event: its list is the current sequence
    assert [(u.items, u.event_id) for u in batch.updates.values()] == [(("a", "b", "c"), "e2")]


def test_the_next_batch_reuses_what_the_last_wrote_unless_the_table_changed(monkeypatch):
    from streams import pipeline as pipeline_module

    decoded = []
    real = pipeline_module.UserHistory.from_bytes
    monkeypatch.setattr(
        pipeline_module.UserHistory, "from_bytes", staticmethod(lambda raw: decoded.append(raw) or real(raw))
    )
    h = Harness()
    for offset, item in enumerate(["a", "b", "c"]):
        h.put(offset, "u1", item)
    run(h.handle(0))
    run(h.handle(1))  # u1's value is the one the last batch wrote: not decoded again
    assert decoded == [None]
    h.table[b"u1"] = orjson.dumps({"items": ["x"], "offset": 1})  # written behind the pipeline's back
    run(h.handle(2))
    assert len(decoded) == 2, "a value that differs from the last write is read from the table"
    assert h.table.value(b"u1")["items"] == ["x", "c"]
    h.pipeline.forget_partitions()
    h.put(3, "u1", "d")
    run(h.handle(3))
    assert len(decoded) == 3, "after a rebalance everything is read again"
    assert h.table.value(b"u1")["items"] == ["x", "c", "d"]


def test_an_internal_failure_dead_letters_the_event_and_the_partition_goes_on():
    h = Harness()
    h.put(0, "u1", "a")
    h.put(1, "u2", "b")
    h.table[b"u1"] = b'{"items": "not a list", "offset": "oops"}'  # a value the pipeline cannot read
    batch = run(h.handle(0, 1))
    assert [letter.source.offset for letter in batch.dead_letters] == [0]
    assert h.dlq.records[0][1]["reason"] == "internal_error" and "ValueError" in h.dlq.records[0][1]["detail"]
    assert list(batch.updates) == ["u2"] and h.table.value(b"u2")["items"] == ["b"]
    assert h.metrics.events_invalid.labels("internal_error")._value.get() == 1


def test_a_failed_dead_letter_is_sent_again_before_the_batch_is_done():
    h = Harness()
    h.log[0] = (b"u1", b"{broken")
    h.dlq.fail = 2
    run(h.handle(0))
    assert len(h.dlq.records) == 3 and all(r["reason"] == "not_json" for _, r in h.dlq.records)


def test_offsets_the_consumer_skipped_are_read_again_and_applied_first():
    h = Harness()
    for offset in range(6):
        h.put(offset, f"u{offset % 2}", f"i{offset}", event_id=f"e{offset}")
    run(h.handle(0, 1))
    batch = run(h.handle(5))  # 2, 3 and 4 never reached the worker
    assert h.fetched == [(2, 5)]
    assert {u.user_id: u.event_id for u in batch.updates.values()} == {"u0": "e4", "u1": "e5"}
    assert h.table.value(b"u0")["items"] == ["i0", "i2", "i4"] and h.table.value(b"u1")["items"] == ["i1", "i3", "i5"]
    assert h.metrics.events_refetched._value.get() == 3


def test_a_skip_inside_a_batch_is_filled_in_order():
    h = Harness()
    for offset in range(5):
        h.put(offset, "u1", f"i{offset}")
    run(h.handle(0, 1, 4))  # the consumer lost 2 and 3 between two events of one batch
    assert h.fetched == [(2, 4)] and h.table.value(b"u1")["items"] == ["i0", "i1", "i2", "i3", "i4"]


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
    assert restarted.table.value(b"u1")["items"] == ["i0", "i1", "i2", "i3"]


def test_a_skip_is_retried_while_the_broker_cannot_be_read(monkeypatch):
    calls = []

    def flaky(topic, partition, start, end):
        calls.append(start)
        if len(calls) < 3:
            raise TimeoutError("broker away")
        return []

    async def no_sleep(_):
        return None

    monkeypatch.setattr("streams.pipeline.asyncio.sleep", no_sleep)
    h = Harness(fetch=flaky)
    h.put(0, "u1", "a")
    h.put(9, "u1", "b")
    run(h.handle(0))
    run(h.handle(9))
    assert calls == [1, 1, 1] and h.table.value(b"u1")["items"] == ["a", "b"]


@pytest.mark.parametrize("bad", [None, b"", b"\xff", b"[]"])
def test_hostile_values_never_raise(bad):
    h = Harness()
    h.log[0] = (b"u1", bad)
    batch = run(h.handle(0))
    assert len(batch.dead_letters) == 1 and not batch.updates


# --- online grading ------------------------------------------------------------------------------------------------
class Graded(Harness):
    """A harness whose pipeline keeps served lists, with a shadow engine that ranks the catalog backwards."""

    def __init__(self, shadow=True, fraction=1.0, lists=None):
        super().__init__()
        self.settings = Settings(max_len=5, top_k=3, metrics_port=0, shadow_fraction=fraction)
        self.lists = ServedLists() if lists is None else lists
        self.grades = Sink()
        self.shadow = FakeEngine([f"i{n}" for n in reversed(range(20))]) if shadow else None
        if self.shadow is not None:
            self.shadow.version = "fake-shadow"
        self.pipeline = Pipeline(
            self.settings,
            FakeRegistry(self.engine, self.shadow),
            self.metrics,
            self.table,
            self.recs.many,
            self.dlq,
            lists=self.lists,
            send_grades=self.grades.many,
        )

    async def handle(self, *offsets):
        batch = await self.pipeline.ingest([(source(o, self.log[o][0]), self.log[o][1]) for o in offsets])
        scored = self.pipeline.score(self.engine, list(batch.updates.values()), self.shadow)
        await self.pipeline.publish(batch, self.engine, scored)
        return batch

    def counter(self, metric, role, *labels):
        model = "fake-v1" if role == "live" else "fake-shadow"
        return getattr(self.metrics, metric).labels(role, model, *labels)._value.get()


def test_the_next_event_is_graded_against_the_list_served_before_it_live_and_shadow():
    h = Graded()
    h.put(0, "u1", "a")
    run(h.handle(0))  # served: live [i0, i1, i2], shadow [i19, i18, i17]
    assert h.lists.get(0, b"u1") == {
        "o": 0,
        "live": ["fake-v1", ["i0", "i1", "i2"]],
        "shadow": ["fake-shadow", ["i19", "i18", "i17"]],
    }
    h.put(1, "u1", "i1")
    run(h.handle(1))
    assert h.counter("online_graded", "live", "click") == 1
    assert h.counter("online_hits", "live", "click", "1") == 0 and h.counter("online_hits", "live", "click", "5") == 1
    assert h.counter("online_ndcg", "live", "click", "10") == pytest.approx(1 / math.log2(3))
    assert h.counter("online_reciprocal_rank", "live", "click") == pytest.approx(0.5)
    assert h.counter("online_graded", "shadow", "click") == 1 and h.counter("online_hits", "shadow", "click", "10") == 0
    ((key, record),) = h.grades.records
    assert key == b"u1" and record == {
        "partition": 0,
        "offset": 1,
        "event_type": "click",
        "live": "fake-v1",
        "live_rank": 1,
        "shadow": "fake-shadow",
        "shadow_rank": None,
    }


def test_only_a_list_made_from_the_sequence_just_before_is_graded_and_each_event_once():
    h = Graded(shadow=False)
    for offset, item in enumerate(["a", "i0", "i1", "i2"]):
        h.put(offset, "u1", item)
    run(h.handle(0))
    run(h.handle(1, 2))  # i0 graded against [i0, i1, i2]; i1 came after i0 in the same batch: no list between
    assert h.counter("online_graded", "live", "click") == 1
    assert h.counter("online_hits", "live", "click", "1") == 1
    run(h.handle(1, 2))  # a replay: nothing applied, nothing graded again
    assert h.counter("online_graded", "live", "click") == 1
    h.lists.put(0, {b"u1": {"o": 1, "live": ["fake-v1", ["i2"]]}})  # a list from an older sequence (1, not 2)
    run(h.handle(3))
    assert h.counter("online_graded", "live", "click") == 1
    assert h.grades.records == []  # no shadow: no paired records


def test_a_repeat_of_an_item_already_in_the_sequence_is_a_miss():
    h = Graded(shadow=False)
    h.put(0, "u1", "a")
    h.put(1, "u1", "a")
    run(h.handle(0))
    run(h.handle(1))
    assert h.counter("online_graded", "live", "click") == 1 and h.counter("online_hits", "live", "click", "10") == 0


def test_the_shadow_scores_a_stable_share_of_users_and_is_never_published():
    h = Graded(fraction=0.5)
    users = [f"user-{n}" for n in range(200)]
    for offset, user in enumerate(users):
        h.put(offset, user, "a")
    run(h.handle(*range(len(users))))
    shadowed = {u.encode() for u in users if "shadow" in h.lists.get(0, u.encode())}
    assert 60 < len(shadowed) < 140  # about half
    assert shadowed == {u.encode() for u in users if in_shadow_share(u, 0.5)}
    assert {r["model_version"] for _, r in h.recs.records} == {"fake-v1"}
    assert len(h.recs.records) == len(users)
    assert h.metrics.shadow_inference._sum.get() > 0


def test_a_failing_shadow_never_stops_the_live_lists():
    h = Graded()

    def broken(sequences, k):
        raise ValueError(f"k={k} is larger than the model's top_k=2")

    h.shadow.recommend = broken
    h.put(0, "u1", "a")
    run(h.handle(0))
    assert [r["user_id"] for _, r in h.recs.records] == ["u1"]
    assert h.lists.get(0, b"u1") == {"o": 0, "live": ["fake-v1", ["i0", "i1", "i2"]]}  # no shadow list to grade


def test_a_served_list_that_cannot_be_read_never_costs_the_event():
    h = Graded(shadow=False)
    h.put(0, "u1", "a")
    run(h.handle(0))
    h.lists.put(0, {b"u1": {"o": 0, "live": "not a pair"}})  # e.g. a value written by a future version
    h.put(1, "u1", "b")
    run(h.handle(1))
    assert h.table.value(b"u1")["items"] == ["a", "b"] and h.dlq.records == []
    assert h.counter("online_graded", "live", "click") == 0


def test_the_served_lists_of_a_revoked_partition_are_dropped():
    h = Graded(shadow=False)
    h.put(0, "u1", "a")
    run(h.handle(0))
    assert len(h.lists) == 1
    h.pipeline.forget_partitions({1})
    assert len(h.lists) == 1
    h.pipeline.forget_partitions({0})
    assert len(h.lists) == 0
    h.put(1, "u1", "i0")
    run(h.handle(1))  # the list was never written to the table: not graded
    assert h.counter("online_graded", "live", "click") == 0


def test_a_served_list_is_written_only_once_due_and_never_when_the_users_next_event_came_first():
    clock = [0.0]
    h = Graded(shadow=False, lists=ServedLists(delay=5.0, clock=lambda: clock[0]))
    for offset, (user, item) in enumerate([("u1", "a"), ("u2", "b"), ("u1", "i0"), ("u2", "c")]):
        h.put(offset, user, item)
    run(h.handle(0, 1))
    clock[0] = 2.0
    run(h.handle(2))  # u1's next event, 2 s later: graded from memory; its old list is never written
    assert h.counter("online_graded", "live", "click") == 1 and h.counter("online_hits", "live", "click", "1") == 1
    assert "served" not in h.table.value(b"u1") and "served" not in h.table.value(b"u2")
    clock[0] = 6.0
    run(h.handle(3))  # u2's list of 6 s ago is due, but u2's sequence moved on with this very batch
    assert "served" not in h.table.value(b"u2") and h.counter("online_graded", "live", "click") == 2
    clock[0] = 8.0
    h.put(4, "u2", "d")
    run(h.handle(4))  # u1's list of 2 s is due: written into u1's value, its sequence unchanged
    assert h.table.value(b"u1")["served"]["o"] == 2 and "served" not in h.table.value(b"u2")


def test_served_lists_go_into_the_table_with_the_next_batch_and_grade_after_a_restart():
    h = Graded()
    h.put(0, "u1", "a")
    h.put(1, "u2", "b")
    run(h.handle(0))
    assert "served" not in h.table.value(b"u1")  # served after the batch's write: in memory until the next batch
    run(h.handle(1))  # u2's event: the partition's next batch writes u1's list into u1's value
    assert h.table.value(b"u1")["served"] == {
        "o": 0,
        "live": ["fake-v1", ["i0", "i1", "i2"]],
        "shadow": ["fake-shadow", ["i19", "i18", "i17"]],
    }
    assert h.table.value(b"u1")["items"] == ["a"] and h.lists.get(0, b"u1") is None
    assert "served" not in h.table.value(b"u2")

    restarted = Graded()  # a new worker over the same (restored) table: nothing in memory
    restarted.table, restarted.log = h.table, h.log
    restarted.pipeline.table = h.table
    restarted.put(2, "u1", "i2")
    run(restarted.handle(2))
    assert restarted.counter("online_graded", "live", "click") == 1
    assert restarted.counter("online_reciprocal_rank", "live", "click") == pytest.approx(1 / 3)
    assert [r["live_rank"] for _, r in restarted.grades.records] == [2]
    assert "served" not in restarted.table.value(b"u1")  # a new sequence: its old lists are gone with it


def test_a_served_list_is_not_written_once_the_sequence_moved_on():
    h = Graded(shadow=False)
    h.put(0, "u1", "a")
    run(h.handle(0))
    h.lists.put(0, {b"u1": {"o": 0, "live": ["fake-v1", ["i5"]]}})
    h.put(1, "u1", "b")
    run(h.handle(1))  # u1's sequence now ends at offset 1: the list made for offset 0 is not kept
    assert "served" not in h.table.value(b"u1")
    h.put(2, "u2", "c")
    run(h.handle(2))  # u1's list for offset 1 (served after the last batch) is written now
    assert h.table.value(b"u1")["served"]["o"] == 1

"""The worker against the real local Kafka broker and a really trained model."""

from __future__ import annotations

import json
import random
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer

from streams.tools.worker_process import metric_value
from tests.conftest import model_version, wait_until

pytestmark = pytest.mark.kafka


def send_all(bootstrap, topic, messages):
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    sent = [producer.send(topic, key=key, value=value) for key, value in messages]
    producer.flush()
    for future in sent:
        future.get(timeout=30)  # a record the broker refused fails the test here, not as a missing answer later
    producer.close()


class Collector:
    """Reads a topic from the beginning into a list of (key, decoded JSON)."""

    def __init__(self, bootstrap, topic):
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, enable_auto_commit=False
        )
        self.records = []

    def poll(self):
        for messages in self.consumer.poll(timeout_ms=300).values():
            self.records.extend((m.key, json.loads(m.value)) for m in messages)
        return self.records

    def close(self):
        self.consumer.close()


def event(user, item, ts, event_id, event_type="click"):
    return json.dumps(
        {"user_id": user, "item_id": item, "event_type": event_type, "ts": ts, "event_id": event_id}
    ).encode()


def test_thousand_events_for_hundred_users(start_worker, model_root, dataset):
    items = [json.loads(line)["item_id"] for line in (dataset / "items.jsonl").read_text().splitlines()]
    rng = random.Random(3)
    seen: dict[str, set[str]] = {}
    messages = []
    for n in range(1000):
        user, item = f"user{n % 100}", rng.choice(items)
        seen.setdefault(user, set()).add(item)
        messages.append((user.encode(), event(user, item, time.time(), f"ev{n}")))
    worker = start_worker(model_root, top_k=5)
    out = Collector(worker.bootstrap, worker.recommendations)
    try:
        send_all(worker.bootstrap, worker.events, messages)
        last_trigger = {f"user{u}": f"ev{900 + u}" for u in range(100)}

        def all_users_final():
            worker.assert_alive()
            triggers = {r["user_id"]: r["trigger_event_id"] for _, r in out.poll()}
            return all(triggers.get(u) == t for u, t in last_trigger.items())

        wait_until(all_users_final, timeout=120, what="a recommendation after each user's last event")
    finally:
        out.close()
    version = model_version(model_root)
    by_user = {}
    for key, record in out.records:
        assert key.decode() == record["user_id"]
        by_user.setdefault(record["user_id"], []).append(record)
        ids = [i["item_id"] for i in record["items"]]
        scores = [i["score"] for i in record["items"]]
        assert len(ids) == 5 and len(set(ids)) == 5
        assert scores == sorted(scores, reverse=True)
        assert record["model_version"] == version
        assert record["produced_ts"] >= record["event_ts"]
        assert all(i["because"] is None or i["because"] in seen[record["user_id"]] for i in record["items"])
    assert set(by_user) == {f"user{u}" for u in range(100)}
    for user, records in by_user.items():
        final = records[-1]
        assert not seen[user] & {i["item_id"] for i in final["items"]}, f"{user} got an item they had seen"


def final_triggers(records, users):
    """The trigger event id of the newest recommendation of each of ``users``."""
    triggers = {}
    for _, record in records:
        triggers[record["user_id"]] = record["trigger_event_id"]
    return {user: triggers.get(user) for user in users}


MALFORMED = [
    b"not json at all",
    b"\xff\xfe\x00binary",
    b"[1, 2, 3]",
    b'"just a string"',
    b"42",
    b"",
    json.dumps({"item_id": "i1", "event_type": "click", "ts": 1}).encode(),
    json.dumps({"user_id": "bad", "event_type": "click", "ts": 1}).encode(),
    json.dumps({"user_id": "bad", "item_id": "i1", "ts": 1}).encode(),
    json.dumps({"user_id": "bad", "item_id": "i1", "event_type": "click"}).encode(),
    json.dumps({"user_id": "bad", "item_id": "i1", "event_type": "teleport", "ts": 1}).encode(),
    json.dumps({"user_id": "bad", "item_id": "i1", "event_type": "click", "ts": "last tuesday"}).encode(),
    json.dumps({"user_id": "bad", "item_id": {"x": 1}, "event_type": "click", "ts": 1}).encode(),
    json.dumps({"user_id": "", "item_id": "i1", "event_type": "click", "ts": 1}).encode(),
    json.dumps({"user_id": "bad", "item_id": "i1", "event_type": "click", "ts": 1, "pad": "x" * 20000}).encode(),
]


def test_malformed_events_go_to_the_dead_letter_topic(start_worker, model_root, dataset):
    items = [json.loads(line)["item_id"] for line in (dataset / "items.jsonl").read_text().splitlines()]
    rng = random.Random(5)
    bad = [(b"bad", MALFORMED[n % len(MALFORMED)]) for n in range(48)]
    bad.append((None, event("bad", "i1", 1.0, "no-key")))  # no key: the partition would be arbitrary
    bad.append((b"someone-else", event("bad", "i1", 1.0, "wrong-key")))  # key differs from user_id
    good = [
        (f"g{n % 20}".encode(), event(f"g{n % 20}", rng.choice(items), time.time(), f"good{n}")) for n in range(200)
    ]
    mixed = good + bad
    rng.shuffle(mixed)
    worker = start_worker(model_root)
    dlq = Collector(worker.bootstrap, worker.dlq)
    out = Collector(worker.bootstrap, worker.recommendations)
    try:
        send_all(worker.bootstrap, worker.events, mixed)
        wait_until(lambda: len(dlq.poll()) >= 50 and worker.assert_alive() is None, timeout=120, what="50 dead letters")
        wait_until(
            lambda: metric_value(worker.metrics(), "streamrec_events_total") >= 200,
            timeout=60,
            what="200 valid events applied",
        )
        metrics = worker.metrics()
        assert metric_value(metrics, "streamrec_events_total") == 200
        assert metric_value(metrics, "streamrec_events_invalid_total") == 50
        # every valid event was applied: each user's newest recommendation answers their last event (send order)
        last_good = {}
        for key, value in mixed:
            if json.loads(value).get("event_id", "").startswith("good") if value.startswith(b"{") else False:
                last_good[key.decode()] = json.loads(value)["event_id"]
        wait_until(
            lambda: final_triggers(out.poll(), last_good) == last_good,
            timeout=60,
            what="each user's last valid event to be answered",
        )
        # the worker keeps consuming after the bad input
        send_all(worker.bootstrap, worker.events, [(b"late", event("late", items[0], time.time(), "late-1"))])
        wait_until(
            lambda: any(r["trigger_event_id"] == "late-1" for _, r in out.poll()),
            timeout=60,
            what="a recommendation for an event sent after the bad ones",
        )
        dlq.poll()
    finally:
        dlq.close()
        out.close()
    assert len(dlq.records) == 50
    originals = sorted(value for _, value in bad)
    import base64

    assert sorted(base64.b64decode(r["value_b64"]) for _, r in dlq.records) == originals
    reasons = {r["reason"] for _, r in dlq.records}
    assert {
        "not_json",
        "not_object",
        "missing_field",
        "unknown_event_type",
        "bad_field",
        "oversized",
        "bad_key",
    } <= reasons
    assert all(r["detail"] and r["source"]["topic"] == worker.events for _, r in dlq.records)
    assert sum("no key" in r["detail"] for _, r in dlq.records) == 1
    assert final_triggers(out.records, last_good) == last_good

"""User sequences survive a worker restart, and replayed events are not applied twice (real Kafka)."""

from __future__ import annotations

import json
import time

import pytest

from streams.tools.worker_process import metric_value
from tests.conftest import wait_until
from tests.integration.test_worker_kafka import Collector, event, send_all

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_sequences_survive_a_restart(start_worker, model_root, dataset, store):
    items = [json.loads(line)["item_id"] for line in (dataset / "items.jsonl").read_text().splitlines()]
    first = start_worker(model_root, store=store, top_k=10)
    history = items[:6]
    send_all(
        first.bootstrap,
        first.events,
        [(b"r1", event("r1", item, time.time(), f"before-{n}")) for n, item in enumerate(history)],
    )
    wait_until(
        lambda: metric_value(first.metrics(), "streamrec_events_total") == len(history),
        timeout=60,
        what="the first worker to apply the history",
    )
    time.sleep(1.5)  # past the offset commit interval (1 s)
    first.stop()
    killed = first.forced

    # same app id, topics and data dir: a restart of the same worker
    second = first.start()
    try:
        out = Collector(second.bootstrap, second.recommendations)
        send_all(second.bootstrap, second.events, [(b"r1", event("r1", items[6], time.time(), "after"))])
        try:
            wait_until(
                lambda: any(r["trigger_event_id"] == "after" for _, r in out.poll()),
                timeout=150,
                what="a recommendation after the restart",
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; first worker SIGKILLed: {killed}\n--- worker log:\n{second.tail(60)}"
            ) from None
        out.close()
        # the restarted worker applied only the new event: the old ones came back from the changelog/store
        assert metric_value(second.metrics(), "streamrec_events_total") == 1
        rec = [r for _, r in out.records if r["trigger_event_id"] == "after"][-1]
        recommended = {i["item_id"] for i in rec["items"]}
        assert not recommended & set(history + [items[6]]), "the restored sequence masks every earlier item"
        assert {i["because"] for i in rec["items"]} & set(history), "explanations use the restored history"
    finally:
        second.stop()

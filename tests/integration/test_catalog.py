"""The live catalog against the real broker: availability and scenarios filter every list, across a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from kafka import KafkaProducer

from streams.tools.worker_process import metric_value
from tests.conftest import ROOT, wait_until
from tests.integration.test_worker_kafka import Collector

pytestmark = pytest.mark.kafka


def scenario_of(item: str) -> str:
    return "shop" if int(item[1:]) % 2 == 0 else "video"


def send(producer, topic, user, item, scenario, event_id):
    value = {"user_id": user, "item_id": item, "event_type": "click", "ts": time.time(), "scenario": scenario}
    producer.send(topic, key=user.encode(), value=json.dumps({**value, "event_id": event_id}).encode())
    producer.flush()


def latest(out: Collector, event_id: str, worker) -> dict:
    def found():
        worker.assert_alive()
        return next((r for _, r in reversed(out.poll()) if r["trigger_event_id"] == event_id), None)

    return wait_until(found, timeout=30, what=f"the recommendation for {event_id}")


def test_unavailable_items_and_other_scenarios_never_appear_also_after_a_restart(
    start_worker, model_root, dataset, tmp_path
):
    items = [json.loads(line) for line in (dataset / "items.jsonl").read_text().splitlines()]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps({**it, "scenario": scenario_of(it["item_id"])}) + "\n" for it in items))
    worker = start_worker(model_root, model_poll_seconds="0", top_k="10")
    topic = worker.env["STREAMREC_ITEMS_TOPIC"]
    published = subprocess.run(
        [sys.executable, "-m", "streams", "items", str(catalog)],
        env=worker.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert published.returncode == 0 and f"sent {len(items)} items" in published.stdout, published.stderr
    wait_until(
        lambda: metric_value(worker.metrics(), "streamrec_catalog_items") == len(items),
        timeout=30,
        what="the worker's catalog to hold every item",
    )
    out = Collector(worker.bootstrap, worker.recommendations)
    producer = KafkaProducer(bootstrap_servers=worker.bootstrap)
    # a record that breaks the items contract is dead-lettered with its reason and source
    producer.send(topic, key=b"i-bad", value=json.dumps({"item_id": "i-bad", "available": "yes"}).encode())
    producer.flush()
    dlq = Collector(worker.bootstrap, worker.dlq)
    ((_, letter),) = wait_until(lambda: dlq.poll(), timeout=15, what="the dead letter of the bad item")
    assert letter["reason"] == "bad_field" and letter["source"]["topic"] == topic
    assert metric_value(worker.metrics(), "streamrec_catalog_invalid_total", reason="bad_field") == 1
    dlq.close()
    shop = [it["item_id"] for it in items if scenario_of(it["item_id"]) == "shop"]
    video = [it["item_id"] for it in items if scenario_of(it["item_id"]) == "video"]

    # a history in both scenarios; each list holds only its event's scenario
    for n, item in enumerate(shop[:3] + video[:2]):
        send(producer, worker.events, "both", item, scenario_of(item), f"both-{n}")
    record = latest(out, "both-4", worker)
    assert record["scenario"] == "video" and len(record["items"]) == 10
    assert {scenario_of(i["item_id"]) for i in record["items"]} == {"video"}
    send(producer, worker.events, "both", shop[3], "shop", "both-5")
    record = latest(out, "both-5", worker)
    assert record["scenario"] == "shop" and {scenario_of(i["item_id"]) for i in record["items"]} == {"shop"}
    assert not {i["item_id"] for i in record["items"]} & set(shop[:4] + video[:2])  # the history spans both

    # the top item of that list is published as unavailable: no list made after contains it
    gone = record["items"][0]["item_id"]
    unavailable = {**next(it for it in items if it["item_id"] == gone), "scenario": "shop", "available": False}
    producer.send(topic, key=gone.encode(), value=json.dumps(unavailable).encode())
    producer.flush()
    wait_until(
        lambda: metric_value(worker.metrics(), "streamrec_catalog_items", available="false") == 1,
        timeout=10,
        what="the catalog to apply the update",
    )
    users = [f"shopper-{n}" for n in range(30)]

    def shop_round(tag: str) -> list[dict]:
        for n, user in enumerate(users):
            send(producer, worker.events, user, shop[4 + n % 5], "shop", f"{tag}-{n}")
        return [latest(out, f"{tag}-{n}", worker) for n in range(len(users))]

    after = shop_round("after")
    assert all(len(r["items"]) == 10 for r in after)
    assert not [r for r in after if gone in {i["item_id"] for i in r["items"]}]

    # a restart: the catalog is restored from the topic before the new worker serves
    worker.stop()
    worker = worker.sibling("restarted").start()  # same topics and group, an empty data directory
    try:
        again = shop_round("again")
        assert not [r for r in again if gone in {i["item_id"] for i in r["items"]}]
        assert all({scenario_of(i["item_id"]) for i in r["items"]} == {"shop"} for r in again)
    finally:
        worker.stop()
        producer.close()
        out.close()

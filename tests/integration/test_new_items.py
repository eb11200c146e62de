"""New items against the real broker: an item never seen in training, published on `items`, reaches the lists of
users whose histories sit in its category within seconds, from its text alone; unavailable, it is gone from every
list after; the same after a worker restart."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict

import pytest
from kafka import KafkaProducer

from streams.tools.worker_process import metric_value
from tests.conftest import wait_until
from tests.integration.test_catalog import latest
from tests.integration.test_worker_kafka import Collector

pytestmark = pytest.mark.kafka

NEW = "new-item-1"


def publish_item(producer, topic, item: dict) -> float:
    producer.send(topic, key=item["item_id"].encode(), value=json.dumps(item).encode())
    producer.flush()
    return time.monotonic()


def test_a_new_item_reaches_its_category_from_its_text_and_unavailable_leaves_every_list(
    start_worker, text_model_root, dataset
):
    items = [json.loads(line) for line in (dataset / "items.jsonl").read_text().splitlines()]
    by_category: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        by_category[item["category"]].append(item)
    category, members = max(by_category.items(), key=lambda kv: len(kv[1]))
    others = [it for it in items if it["category"] != category]
    model = members[0]
    new = {
        "item_id": NEW,
        "title": f"{model['title']} deluxe",
        "text": f"{model['title']} deluxe, a new {model['text'].split(', a ', 1)[1]}",
        "category": category,
        "available": True,
    }
    worker = start_worker(text_model_root, model_poll_seconds="0", top_k="10")
    topic = worker.env["STREAMREC_ITEMS_TOPIC"]
    producer = KafkaProducer(bootstrap_servers=worker.bootstrap)
    out = Collector(worker.bootstrap, worker.recommendations)
    rng = random.Random(5)
    fans = {f"fan-{n}": rng.sample(members, 4) for n in range(20)}  # histories inside the category
    strangers = {f"stranger-{n}": rng.sample(others, 4) for n in range(20)}
    rounds = iter(range(1000))

    def lists(users: dict[str, list[dict]], step: int) -> list[set[str]]:
        """Each user sends the ``step``-th item of their history; returns the lists made for those events."""
        tag = f"r{next(rounds)}"
        for user, history in users.items():
            item = history[step % len(history)]["item_id"]
            value = {"user_id": user, "item_id": item, "event_type": "click", "ts": time.time(), "event_id": tag + user}
            producer.send(worker.events, key=user.encode(), value=json.dumps(value).encode())
        producer.flush()
        return [{i["item_id"] for i in latest(out, tag + user, worker)["items"]} for user in users]

    def share(found: list[set[str]]) -> float:
        return sum(NEW in items for items in found) / len(found)

    try:
        for step in range(3):
            lists(fans, step), lists(strangers, step)
        published = publish_item(producer, topic, new)
        wait_until(
            lambda: metric_value(worker.metrics(), "streamrec_catalog_items_embedded_total") >= 1,
            timeout=15,
            what="the new item to be embedded",
        )
        recommendable = time.monotonic() - published
        fans_share, strangers_share = share(lists(fans, 3)), share(lists(strangers, 3))
        print(
            f"\nnew item recommendable {recommendable:.2f}s after publish; in {fans_share:.0%} of the fans' lists, "
            f"{strangers_share:.0%} of the others'"
        )
        assert fans_share >= 0.5 and strangers_share <= fans_share / 2, (fans_share, strangers_share)
        assert metric_value(worker.metrics(), "streamrec_item_recommendable_seconds_count") == 1

        publish_item(producer, topic, {**new, "available": False})
        wait_until(
            lambda: metric_value(worker.metrics(), "streamrec_catalog_items", available="false") == 1,
            timeout=10,
            what="the catalog to apply the update",
        )
        assert share(lists(fans, 0)) == 0

        # a restart: the catalog (the item unavailable) is restored before the new worker serves
        worker.stop()
        worker = worker.sibling("restarted").start()
        assert share(lists(fans, 1)) == 0
        publish_item(producer, topic, new)  # available again: the new worker embeds it from its text
        wait_until(
            lambda: metric_value(worker.metrics(), "streamrec_catalog_items_embedded_total") >= 1,
            timeout=15,
            what="the restarted worker to embed the new item",
        )
        assert share(lists(fans, 2)) >= 0.5
    finally:
        worker.stop()
        producer.close()
        out.close()

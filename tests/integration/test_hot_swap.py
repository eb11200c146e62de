"""Hot model swap under load, a refused broken version, and the metrics after the run (real Kafka)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from serving.artifact import resolve_version
from streams.tools.worker_process import metric_value
from tests.conftest import wait_until
from tests.integration.test_worker_kafka import Collector, event

pytestmark = pytest.mark.kafka

N_EVENTS = 600


def publish_version(source: Path, root: Path, name: str, broken: bool = False) -> None:
    """Copy a version under a new name the way training does: a hidden folder, then one rename."""
    tmp = root / f".tmp-{name}"
    shutil.copytree(source, tmp)
    manifest = json.loads((tmp / "manifest.json").read_text())
    manifest["model_version"] = name
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    if broken:
        (tmp / "model.onnx").write_bytes(b"truncated upload")
    tmp.rename(root / name)


def test_hot_swap_under_load_is_exactly_once_and_switches_once(start_worker, model_root, dataset, tmp_path):
    items = [json.loads(line)["item_id"] for line in (dataset / "items.jsonl").read_text().splitlines()]
    source = resolve_version(model_root)
    root = tmp_path / "models"
    root.mkdir()
    v1, broken, v2 = "20990101T000000Z-aaaaaa", "20990102T000000Z-bbbbbb", "20990103T000000Z-cccccc"
    publish_version(source, root, v1)
    worker = start_worker(root, model_poll_seconds="0.5", top_k=5)
    out = Collector(worker.bootstrap, worker.recommendations)
    producer = KafkaProducer(bootstrap_servers=worker.bootstrap, linger_ms=2)
    swapped_at = {}

    def send_events() -> None:
        for n in range(N_EVENTS):  # one event per user: each must yield exactly one recommendation
            user = f"swap-user-{n}"
            producer.send(
                worker.events, key=user.encode(), value=event(user, items[n % len(items)], time.time(), f"swap-{n}")
            )
            if n == N_EVENTS // 4:
                publish_version(source, root, broken, broken=True)
            if n == N_EVENTS // 2:
                # the broken version must have been seen before a newer one hides it (a slow start-up could
                # otherwise first poll after both are published)
                wait_until(lambda: f"model {broken} rejected" in worker.log(), timeout=60, what="the rejection")
                swapped_at["published"] = time.time()
                publish_version(source, root, v2)
            time.sleep(0.01)
        producer.flush()

    try:
        sender = threading.Thread(target=send_events)
        sender.start()
        wait_until(
            lambda: worker.assert_alive() is None and len({r["trigger_event_id"] for _, r in out.poll()}) >= N_EVENTS,
            timeout=120,
            what=f"{N_EVENTS} recommendations",
        )
        sender.join()
        time.sleep(1.0)
        out.poll()
        wait_until(
            lambda: (
                metric_value(worker.metrics(), "streamrec_consumer_lag_messages") == 0
                and metric_value(worker.metrics(), "streamrec_users_tracked") == N_EVENTS
            ),
            timeout=30,
            what="housekeeping metrics to catch up",
        )
        metrics = worker.metrics()
    finally:
        producer.close()
        out.close()

    records = [r for _, r in out.records]
    triggers = [r["trigger_event_id"] for r in records]
    assert sorted(triggers) == sorted(f"swap-{n}" for n in range(N_EVENTS)), "each event answered exactly once"
    versions = [r["model_version"] for r in sorted(records, key=lambda r: r["produced_ts"])]
    changes = [(a, b) for a, b in zip(versions, versions[1:]) if a != b]
    assert changes == [(v1, v2)], f"versions must switch exactly once from v1 to v2, got {changes}"
    assert broken not in versions
    first_v2 = min(r["produced_ts"] for r in records if r["model_version"] == v2)
    assert first_v2 >= swapped_at["published"]
    log = worker.log()
    assert f"model {broken} rejected" in log and "corrupt" in log

    # every metric is exposed, with values that match the run
    assert metric_value(metrics, "streamrec_events_total") == N_EVENTS
    assert metric_value(metrics, "streamrec_events_invalid_total") == 0
    assert metric_value(metrics, "streamrec_recommendations_total") == N_EVENTS
    assert metric_value(metrics, "streamrec_event_to_recommendation_seconds_count") == N_EVENTS
    assert 0 < metric_value(metrics, "streamrec_event_to_recommendation_seconds_sum") / N_EVENTS < 5
    calls = metric_value(metrics, "streamrec_inference_seconds_count")
    assert 0 < calls <= N_EVENTS
    assert metric_value(metrics, "streamrec_inference_seconds_sum") > 0
    assert metric_value(metrics, "streamrec_batch_size_sum") == N_EVENTS
    assert metric_value(metrics, "streamrec_batch_size_count") == calls
    assert metric_value(metrics, "streamrec_users_tracked") == N_EVENTS
    assert metric_value(metrics, "streamrec_model_info", version=v2) == 1
    assert f'streamrec_model_info{{version="{v1}"}}' not in metrics
    assert metric_value(metrics, "streamrec_model_swaps_total", outcome="swapped") == 1
    assert metric_value(metrics, "streamrec_model_swaps_total", outcome="rejected") == 1
    assert 'streamrec_consumer_lag_messages{partition="0"' in metrics

"""`streamrec bench --new-items N`: what new catalog items cost, measured through the worker's own path.

- items embedded per second: ``serving.text_rows.TextRows`` (the artifact's ONNX text encoder and projection, one
  onnxruntime thread as in the worker) on generated product titles and texts;
- the batch cost of a catalog 10x the training one: one engine call for 256 users with the trained rows, then with
  9x as many rows added (rows are random: their values do not change the cost);
- publish to recommendable: a real worker follows the `items` topic while new items are published one by one;
  its ``streamrec_item_recommendable_seconds`` histogram gives p50 / p99 (bucket-interpolated, as Prometheus'
  ``histogram_quantile``).
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import numpy as np
from kafka import KafkaProducer

from serving.artifact import ArtifactError, load_artifact, resolve_version
from serving.engine import Engine
from serving.text_rows import TextRows, item_text
from streams.settings import Settings
from streams.tools.bench import time_calls
from streams.tools.models import train
from streams.tools.simulate import simulate, write_dataset
from streams.tools.worker_process import WorkerProcess, metric_value

ADJECTIVES = ("compact", "deluxe", "foldable", "heavy-duty", "wireless", "organic", "limited", "classic")
NOUNS = ("kettle", "backpack", "desk lamp", "running shoe", "blender", "novel", "headphones", "yoga mat", "teapot")


def new_titles(n: int) -> list[tuple[str, str, str]]:
    """``n`` distinct (title, category, text) triples of products no model was trained on."""
    out = []
    for k in range(n):
        adjective, noun = ADJECTIVES[k % len(ADJECTIVES)], NOUNS[(k // len(ADJECTIVES)) % len(NOUNS)]
        title = f"{adjective} {noun} series {k}"
        out.append((title, noun.split()[-1], f"{title}: a {noun} launched this week, model number {1000 + k}"))
    return out


def text_version(settings: Settings, work: Path) -> Path:
    """A model version that ships the text encoder: the configured one if it does, else one trained here."""
    for root in (settings.model_dir, work / "text-models"):
        try:
            version = resolve_version(root)
        except ArtifactError:
            continue
        if TextRows.load(load_artifact(version)) is not None:
            return version
    print("training a model with item text on simulated data (2,000 users, 3,416 items) for the new-items bench")
    events, catalog = simulate(2000, 3416, 30, 3)
    write_dataset(work / "text-data", events, catalog)
    data = work / "text-data"
    train(data / "events.jsonl", data / "items.jsonl", work / "text-models", "--epochs", "1", "--text")
    return resolve_version(work / "text-models")


def embed_rate(version: Path, n: int) -> dict:
    encoder = TextRows.load(load_artifact(version))
    assert encoder is not None
    texts = [item_text(*triple) for triple in new_titles(n)]
    encoder.rows(texts[:64])  # warm-up
    started = time.perf_counter()
    encoder.rows(texts, batch_size=256)
    seconds = time.perf_counter() - started
    return {"items": n, "seconds": seconds, "items_per_s": n / seconds}


def batch_cost(version: Path, factor: int = 10, batch: int = 256, seconds: float = 2.0) -> list[dict]:
    artifact = load_artifact(version)
    engine = Engine(artifact, device="cpu", max_batch=batch)
    rng = np.random.default_rng(0)
    catalog = list(artifact.item_ids[2:])
    sequences = [[catalog[i] for i in rng.integers(0, len(catalog), artifact.max_len)] for _ in range(batch)]
    rows = []
    for label in ("trained catalog", f"{factor}x catalog"):
        if label != "trained catalog":
            extra = (factor - 1) * artifact.n_items
            emb = rng.normal(0, 0.05, (extra, artifact.item_emb.shape[1])).astype(np.float32)
            engine.add_items([f"bench-new-{k}" for k in range(extra)], emb)
        item_seq = engine.encode(sequences).copy()
        p50 = float(np.percentile(time_calls(partial(engine.score, item_seq), seconds), 50))
        rows.append({"catalog": label, "rows": len(engine.rows), "p50_ms": p50 * 1000, "users_per_s": batch / p50})
    return rows


def histogram_quantile(text: str, name: str, q: float) -> float:
    """Prometheus' ``histogram_quantile`` over one worker's cumulative buckets."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            head, value = line.rsplit(" ", 1)
            bound = head.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(value)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def publish_to_recommendable(
    settings: Settings, version: Path, work: Path, n: int, rate: float = 20.0, keep_topics: bool = False
) -> dict:
    worker = WorkerProcess.isolated(settings.kafka_bootstrap, version, work, prefix="bench-items").start()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","), linger_ms=0)
    name = "streamrec_item_recommendable_seconds"
    try:
        deadline = time.monotonic() + 120
        while "streamrec_catalog_items" not in worker.metrics():
            worker.assert_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not start; its log: {worker.log_path}")
            time.sleep(0.5)
        topic = worker.env["STREAMREC_ITEMS_TOPIC"]
        for k, (title, category, text) in enumerate(new_titles(n)):
            record = {"item_id": f"launch-{k}", "title": title, "category": category, "text": text}
            producer.send(topic, key=record["item_id"].encode(), value=json.dumps(record).encode())
            producer.flush()
            time.sleep(1.0 / rate)
        deadline = time.monotonic() + 60
        while metric_value(worker.metrics(), f"{name}_count") < n:
            worker.assert_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every new item became recommendable within 60 s; log: {worker.log_path}")
            time.sleep(0.5)
        text = worker.metrics()
        return {
            "items": n,
            "rate": rate,
            "p50_s": histogram_quantile(text, name, 0.5),
            "p99_s": histogram_quantile(text, name, 0.99),
            "mean_s": metric_value(text, f"{name}_sum") / n,
        }
    finally:
        producer.close()
        worker.stop()
        if not keep_topics:
            worker.delete_topics()


def run_new_items_bench(settings: Settings, work: Path, n: int, keep_topics: bool = False) -> dict:
    """Print the three new-items tables; returns them."""
    version = text_version(settings, work)
    embedded = embed_rate(version, n)
    print(f"\nnew items, model {version.name} (with its text encoder)")
    print(f"  embedded from their text: {embedded['items_per_s']:,.0f} items/s ({n} items, 1 onnxruntime thread)")
    cost = batch_cost(version)
    for row in cost:
        print(
            f"  batch of 256, {row['catalog']:>15} ({row['rows']:,} rows): {row['p50_ms']:.1f} ms p50, "
            f"{row['users_per_s']:,.0f} users/s"
        )
    latency = publish_to_recommendable(settings, version, work, min(n, 200), keep_topics=keep_topics)
    p50, p99, mean = (latency[key] * 1000 for key in ("p50_s", "p99_s", "mean_s"))
    print(
        f"  publish -> recommendable ({latency['items']} items at {latency['rate']:.0f}/s, real worker): "
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, mean {mean:.0f} ms"
    )
    return {"model": version.name, "embedded": embedded, "batch_cost": cost, "publish_to_recommendable": latency}

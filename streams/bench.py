"""`streamrec bench`: engine-only speed per batch size, and the per-event vs micro-batched pipeline on real Kafka."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from serving.artifact import load_artifact, resolve_version, ArtifactError
from serving.engine import Engine, cuda_available
from streams.app import ensure_worker_topics
from streams.consume import records
from streams.demo import WARMUP_USER, ensure_kafka, wait_until_serving
from streams.produce import produce
from streams.settings import Settings

ENGINE_BATCHES = (1, 8, 64, 256, 1024)
PIPELINE_MODES = (("per-event", 1), ("micro-batched", 256))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _bench_model(settings: Settings, work: Path) -> Path:
    """The model to measure: STREAMREC_MODEL_DIR if it holds one, else an ML-1M-sized model trained here."""
    try:
        return resolve_version(settings.model_dir)
    except ArtifactError:
        pass
    root = work / "models"
    try:
        return resolve_version(root)
    except ArtifactError:
        pass
    from streams.simulate import simulate, write_dataset

    print("no model in STREAMREC_MODEL_DIR: training one with an ML-1M-sized catalog (3,416 items)", flush=True)
    events, items = simulate(2000, 3416, 30, 3)
    write_dataset(work / "data", events, items)
    subprocess.run([sys.executable, "-m", "encoders", "train", "--events", str(work / "data" / "events.jsonl"),
                    "--out", str(root), "--epochs", "1", "--no-text"], check=True)
    return resolve_version(root)


def bench_engine(version: Path, devices: list[str], seconds: float = 1.5) -> list[dict]:
    """Calls/s and users/s of one onnxruntime call per batch size and device."""
    artifact = load_artifact(version)
    rng = np.random.default_rng(0)
    catalog = list(artifact.item_ids[2:])
    rows = []
    for device in devices:
        for batch in ENGINE_BATCHES:
            engine = Engine(artifact, device=device, max_batch=batch)
            sequences = [[catalog[i] for i in rng.integers(0, len(catalog), artifact.max_len)] for _ in range(batch)]
            item_seq = engine.encode(sequences).copy()
            for _ in range(3):
                engine.score(item_seq)
            timings = []
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline or len(timings) < 5:
                started = time.perf_counter()
                engine.score(item_seq)
                timings.append(time.perf_counter() - started)
            p50 = _pct(timings, 50)
            rows.append({"device": engine.device, "batch": batch, "calls": len(timings),
                         "p50_ms": p50 * 1000, "p99_ms": _pct(timings, 99) * 1000, "users_per_s": batch / p50})
    return rows


def bench_pipeline(settings: Settings, version: Path, work: Path, n_events: int) -> list[dict]:
    """Drain the same backlog of events through a worker with max_batch=1 and with micro-batches."""
    from streams.simulate import simulate

    events, _ = simulate(max(100, n_events // 10), 3416, 10, 5)
    catalog = set(load_artifact(version).item_ids[2:])
    events = [e for e in events if e["item_id"] in catalog][:n_events] or events[:n_events]
    rows = []
    for mode, max_batch in PIPELINE_MODES:
        run = uuid.uuid4().hex[:6]
        topics = {"STREAMREC_EVENTS_TOPIC": f"bench-{run}-events",
                  "STREAMREC_RECOMMENDATIONS_TOPIC": f"bench-{run}-recs",
                  "STREAMREC_DLQ_TOPIC": f"bench-{run}-dlq"}
        env = {**os.environ, **topics, "STREAMREC_APP_ID": f"streamrec-bench-{run}",
               "STREAMREC_MODEL_DIR": str(version), "STREAMREC_MAX_BATCH": str(max_batch),
               "STREAMREC_METRICS_PORT": "0", "STREAMREC_LOG_LEVEL": "WARNING",
               "STREAMREC_DATA_DIR": str(work / "faust"), "STREAMREC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
        ensure_worker_topics(Settings.for_env(env))
        log = (work / f"worker-{mode}.log").open("wb")
        worker = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            out_topic = topics["STREAMREC_RECOMMENDATIONS_TOPIC"]
            wait_until_serving(settings.kafka_bootstrap, topics["STREAMREC_EVENTS_TOPIC"], out_topic,
                               events[0]["item_id"], worker)
            last = {e["user_id"]: e["event_id"] for e in events}
            received: list[dict] = []
            done = threading.Event()

            def collect() -> None:
                have: dict[str, str] = {}
                for record in records(settings.kafka_bootstrap, out_topic, True, timeout=600):
                    if record["user_id"] == WARMUP_USER:
                        continue
                    received.append(record)
                    have[record["user_id"]] = record["trigger_event_id"]
                    if len(have) == len(last) and all(have[u] == e for u, e in last.items()):
                        break
                done.set()

            reader = threading.Thread(target=collect, daemon=True)
            reader.start()
            time.sleep(1.0)  # the reader has joined before the backlog starts
            started = time.time()
            produce(settings.kafka_bootstrap, topics["STREAMREC_EVENTS_TOPIC"], iter(events), progress=False)
            done.wait(600)
            elapsed = max(r["produced_ts"] for r in received) - started
            latencies = [r["produced_ts"] - r["event_ts"] for r in received]
            rows.append({"path": mode, "max_batch": max_batch, "events": len(events), "records": len(received),
                         "seconds": elapsed, "events_per_s": len(events) / elapsed,
                         "p50_ms": _pct(latencies, 50) * 1000, "p95_ms": _pct(latencies, 95) * 1000,
                         "p99_ms": _pct(latencies, 99) * 1000})
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()
    return rows


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    head = "  ".join(f"{title:>{len(title) + 2}}" for _, title, _ in columns)
    lines = [head]
    for row in rows:
        lines.append("  ".join(f"{format(row[key], fmt):>{len(title) + 2}}" for key, title, fmt in columns))
    return "\n".join(lines)


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Print the benchmark tables (and write them as JSON with --json)."""
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    version = _bench_model(settings, work)
    manifest = load_artifact(version).manifest
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}"
    print(f"\nmodel {manifest['model_version']}: {manifest['n_items']} items, dim {manifest['dim']}, "
          f"max_len {manifest['max_len']}; machine: {machine}")
    devices = ["cpu"] + (["cuda"] if cuda_available() else [])
    engine_rows = bench_engine(version, devices)
    print("\nengine only (one onnxruntime call per batch)")
    print(_table(engine_rows, [("device", "device", "s"), ("batch", "batch", "d"), ("p50_ms", "p50 ms", ".3f"),
                               ("p99_ms", "p99 ms", ".3f"), ("users_per_s", "users/s", ",.0f")]))
    result = {"model": manifest["model_version"], "machine": machine, "engine": engine_rows}
    if not args.engine_only:
        ensure_kafka(settings.kafka_bootstrap)
        rows = bench_pipeline(settings, version, work, args.events)
        print(f"\npipeline against Kafka at {settings.kafka_bootstrap} (same {args.events} events, backlog drained)")
        print(_table(rows, [("path", "path", "s"), ("max_batch", "max_batch", "d"), ("events_per_s", "events/s", ",.0f"),
                            ("p50_ms", "p50 ms", ",.1f"), ("p95_ms", "p95 ms", ",.1f"), ("p99_ms", "p99 ms", ",.1f"),
                            ("records", "records", "d")]))
        if len(rows) == 2:
            print(f"\nmicro-batched / per-event throughput: {rows[1]['events_per_s'] / rows[0]['events_per_s']:.1f}x")
        result["pipeline"] = rows
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")
    return 0

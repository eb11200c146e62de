"""`streamrec bench`: engine-only speed per batch size, and the per-event vs micro-batched pipeline on real Kafka."""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

from serving.artifact import load_artifact
from serving.engine import Engine, cuda_available
from streams.app import ensure_worker_topics
from streams.settings import Settings
from streams.tools.consume import records
from streams.tools.local_kafka import ensure_kafka
from streams.tools.models import find_or_train
from streams.tools.produce import produce
from streams.tools.worker_process import WorkerProcess

ENGINE_BATCHES = (1, 8, 64, 256, 1024)
PIPELINE_MODES = (("per-event", 1), ("micro-batched", 256))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def bench_engine(version: Path, devices: list[str], threads: int = 0, seconds: float = 1.5) -> list[dict]:
    """Calls/s and users/s of one onnxruntime call per batch size and device."""
    artifact = load_artifact(version)
    rng = np.random.default_rng(0)
    catalog = list(artifact.item_ids[2:])
    rows = []
    for device in devices:
        for batch in ENGINE_BATCHES:
            engine = Engine(artifact, device=device, max_batch=batch, threads=threads)
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
            rows.append(
                {
                    "device": engine.device,
                    "batch": batch,
                    "calls": len(timings),
                    "p50_ms": p50 * 1000,
                    "p99_ms": _pct(timings, 99) * 1000,
                    "users_per_s": batch / p50,
                }
            )
    return rows


class _Collector:
    """Reads recommendation records in a background thread until told the expected triggers."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.received: list[dict] = []
        self._wanted: dict[str, str] = {}
        self._have: dict[str, str] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._bootstrap, self._topic = bootstrap, topic
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for record in records(self._bootstrap, self._topic, True, timeout=900):
            with self._lock:
                self.received.append(record)
                self._have[record["user_id"]] = record["trigger_event_id"]
                self._check()

    def _check(self) -> None:
        if self._wanted and all(self._have.get(u) == e for u, e in self._wanted.items()):
            self._done.set()
            self._wanted = {}

    def wait_for(self, events: list[dict], timeout: float) -> list[dict]:
        """Block until each user's last event in ``events`` has been answered; return the new records."""
        ids = {e["event_id"] for e in events}
        with self._lock:
            self._done.clear()
            self._wanted = {e["user_id"]: e["event_id"] for e in events}
            self._check()  # the answers may all be in already
        if not self._done.wait(timeout):
            raise RuntimeError(f"not every event was answered within {timeout:.0f}s")
        with self._lock:
            return [r for r in self.received if r["trigger_event_id"] in ids]


def bench_pipeline(
    settings: Settings, version: Path, work: Path, n_events: int, rates: list[float], n_paced: int
) -> tuple[list[dict], list[dict]]:
    """Each path on the same data: drain a backlog (max events/s), then latency at each offered load.

    Returns:
        (throughput rows, latency rows).
    """
    from streams.tools.simulate import simulate

    catalog = load_artifact(version).item_ids[2:]
    events, _ = simulate(max(100, (n_events + n_paced * len(rates)) // 10), len(catalog), 10, 5)
    for event in events:  # the model's own item ids, so no event is "unknown"
        event["item_id"] = catalog[int(event["item_id"].lstrip("i")) % len(catalog)]
    events.sort(key=lambda e: e["ts"])
    backlog = events[:n_events]
    paced = [events[n_events + i * n_paced : n_events + (i + 1) * n_paced] for i in range(len(rates))]
    rows, latency_rows = [], []
    for mode, max_batch in PIPELINE_MODES:
        worker = WorkerProcess.isolated(
            settings.kafka_bootstrap,
            version,
            work,
            prefix=f"bench-{mode}",
            max_batch=max_batch,
            metrics_port=0,
            log_level="WARNING",
        )
        ensure_worker_topics(worker.settings)
        events_topic, out_topic = worker.settings.events_topic, worker.settings.recommendations_topic
        print(f"{mode}: producing a backlog of {len(backlog)} events, then starting the worker", flush=True)
        produce(settings.kafka_bootstrap, events_topic, iter(backlog), progress=False)
        collector = _Collector(settings.kafka_bootstrap, out_topic)
        worker.start(create_topics=False)
        try:
            drained = collector.wait_for(backlog, timeout=900)
            produced = [r["produced_ts"] for r in drained]
            drain_s = max(produced) - min(produced)
            rows.append(
                {
                    "path": mode,
                    "max_batch": max_batch,
                    "events": len(backlog),
                    "records": len(drained),
                    "drain_s": drain_s,
                    "events_per_s": len(backlog) / drain_s,
                }
            )
            for rate, chunk in zip(rates, paced):
                print(f"{mode}: {len(chunk)} events offered at {rate:.0f}/s", flush=True)
                produce(settings.kafka_bootstrap, events_topic, iter(chunk), rate=rate, progress=False)
                answered = collector.wait_for(chunk, timeout=300)
                latencies = [r["produced_ts"] - r["event_ts"] for r in answered]
                latency_rows.append(
                    {
                        "path": mode,
                        "rate": rate,
                        "records": len(answered),
                        "p50_ms": _pct(latencies, 50) * 1000,
                        "p95_ms": _pct(latencies, 95) * 1000,
                        "p99_ms": _pct(latencies, 99) * 1000,
                    }
                )
        finally:
            worker.stop()
    return rows, latency_rows


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
    version = find_or_train(settings.model_dir, work, 2000, 3416, why=": an ML-1M-sized catalog (3,416 items)")
    manifest = load_artifact(version).manifest
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}"
    )
    print(
        f"\nmodel {manifest['model_version']}: {manifest['n_items']} items, dim {manifest['dim']}, "
        f"max_len {manifest['max_len']}; machine: {machine}"
    )
    devices = ["cpu"] + (["cuda"] if cuda_available() else [])
    engine_rows = bench_engine(version, devices, settings.ort_threads)
    print("\nengine only (one onnxruntime call per batch)")
    print(
        _table(
            engine_rows,
            [
                ("device", "device", "s"),
                ("batch", "batch", "d"),
                ("p50_ms", "p50 ms", ".3f"),
                ("p99_ms", "p99 ms", ".3f"),
                ("users_per_s", "users/s", ",.0f"),
            ],
        )
    )
    result = {"model": manifest["model_version"], "machine": machine, "engine": engine_rows}
    if not args.engine_only:
        ensure_kafka(settings.kafka_bootstrap)
        rates = [float(r) for r in args.rates.split(",")]
        rows, latency_rows = bench_pipeline(settings, version, work, args.events, rates, args.paced_events)
        print(
            f"\npipeline against Kafka at {settings.kafka_bootstrap}: sustained events/s, draining the same "
            f"backlog of {args.events} events"
        )
        print(
            _table(
                rows,
                [
                    ("path", "path", "s"),
                    ("max_batch", "max_batch", "d"),
                    ("events_per_s", "events/s", ",.0f"),
                    ("records", "records", "d"),
                ],
            )
        )
        print(f"\nlatency from the event's ts to the publish, {args.paced_events} events at each offered rate")
        print(
            _table(
                latency_rows,
                [
                    ("path", "path", "s"),
                    ("rate", "events/s offered", ",.0f"),
                    ("p50_ms", "p50 ms", ",.1f"),
                    ("p95_ms", "p95 ms", ",.1f"),
                    ("p99_ms", "p99 ms", ",.1f"),
                ],
            )
        )
        if len(rows) == 2:
            print(f"\nmicro-batched / per-event throughput: {rows[1]['events_per_s'] / rows[0]['events_per_s']:.1f}x")
        result["pipeline"] = rows
        result["latency"] = latency_rows
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")
    return 0

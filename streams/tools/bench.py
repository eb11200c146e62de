"""`streamrec bench`: engine-only speed per batch size, and the per-event vs micro-batched pipeline on real Kafka."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from serving.artifact import load_artifact
from serving.engine import Engine, cuda_available
from streams.app import ensure_worker_topics
from streams.settings import Settings
from streams.tools.bench_kafka import Collector, send_events
from streams.tools.local_kafka import ensure_kafka
from streams.tools.models import find_or_train
from streams.tools.worker_process import WorkerProcess

ENGINE_BATCHES = (1, 8, 64, 256, 1024)
# then batches of users with short histories: a batch is as wide as its longest one (serving.engine.Engine.encode)
SHORT_HISTORY, SHORT_BATCHES = 10, (64, 256)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def time_calls(call: Callable[[], object], seconds: float) -> list[float]:
    """Seconds per ``call()``: three untimed calls, then timed ones for ``seconds`` (at least five)."""
    for _ in range(3):
        call()
    timings = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(timings) < 5:
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return timings


def bench_engine(version: Path, devices: list[str], threads: int = 0, k: int = 10, seconds: float = 1.5) -> list[dict]:
    """Calls/s and users/s of one onnxruntime call per batch size, history length and device, for lists of ``k``
    items: every batch size with ``max_len`` items per user, then ``SHORT_BATCHES`` with ``SHORT_HISTORY``."""
    artifact = load_artifact(version)
    rng = np.random.default_rng(0)
    catalog = list(artifact.item_ids[2:])
    short = min(SHORT_HISTORY, artifact.max_len)
    shapes = [(batch, artifact.max_len) for batch in ENGINE_BATCHES] + [(batch, short) for batch in SHORT_BATCHES]
    rows = []
    for device in devices:
        for batch, history in shapes:
            engine = Engine(artifact, device=device, max_batch=batch, threads=threads)
            sequences = [[catalog[i] for i in rng.integers(0, len(catalog), history)] for _ in range(batch)]
            item_seq = engine.encode(sequences).copy()
            timings = time_calls(partial(engine.score, item_seq, k=k), seconds)
            p50 = _pct(timings, 50)
            rows.append(
                {
                    "device": engine.device,
                    "batch": batch,
                    "history": history,
                    "width": item_seq.shape[1],
                    "calls": len(timings),
                    "p50_ms": p50 * 1000,
                    "p99_ms": _pct(timings, 99) * 1000,
                    "users_per_s": batch / p50,
                }
            )
    return rows


# The benchmark's no-op scorer, for the pipeline-ceiling row only: the same worker, whose engine returns a
# constant list, so the Python/Kafka cost per event shows on its own. It is injected into that one worker
# process here; nothing outside the benchmark can use it.
NOOP_WORKER = """
import sys
from serving.engine import Engine, ScoredItem

def recommend(self, sequences, k, item_bias=None, behaviours=None):
    constant = [ScoredItem(item, 0.0, None) for item in self.artifact.item_ids[2 : 2 + k]]
    return [constant for _ in sequences]

Engine.recommend = recommend
from streams.tools.cli import main
sys.exit(main(["worker"]))
"""


@dataclass(frozen=True)
class Mode:
    """One way of running the worker in the benchmark."""

    path: str
    max_batch: int
    noop: bool = False  # the no-op scorer: the pipeline ceiling
    shadow: bool = False  # the same model also scores every user as the shadow (graded, never published)


def pipeline_modes(max_batch: int, shadow: bool = False) -> list[Mode]:
    """Per-event, micro-batched, the micro-batched pipeline with the no-op scorer (and with a shadow model)."""
    modes = [
        Mode("per-event", 1),
        Mode("micro-batched", max_batch),
        Mode("pipeline ceiling (no-op scorer)", max_batch, noop=True),
    ]
    if shadow:
        modes.insert(2, Mode("micro-batched + shadow model", max_batch, shadow=True))
    return modes


def freeze_heap() -> None:
    """Put everything this process holds now (above all the events it will send, up to a million dicts) out of the
    garbage collector's sight: its full collections would otherwise stop the paced producer for longer and longer
    as the heap grows, and the events held back would count as the worker's latency."""
    gc.collect()
    gc.freeze()


def bench_events(version: Path, users: int, n_events: int) -> list[dict]:
    """About ``n_events`` simulated events over ``users`` users, with the model's own item ids, in rounds: every
    user's n-th event comes before any user's (n+1)-th, each user's in time order.

    So any slice (the backlog, each offered load) is spread over all the users, as the benchmark means it to be.
    In plain time order the simulated users' timelines start at different times of a day, and the first 40,000
    of 1.26 million events came from 662 of 5,000 users, up to 141 events each: a backlog whose batches held a
    few hundred distinct users with long histories.
    """
    from streams.tools.simulate import simulate

    catalog = load_artifact(version).item_ids[2:]
    events, _ = simulate(users, len(catalog), max(2, -(-n_events // users)), 5)
    seen: dict[str, int] = {}
    rounds = []
    for event in events:  # simulate returns them in time order
        event["item_id"] = catalog[int(event["item_id"].lstrip("i")) % len(catalog)]  # the model's ids: none unknown
        nth = seen.get(event["user_id"], 0)
        seen[event["user_id"]] = nth + 1
        rounds.append(nth)
    order = sorted(range(len(events)), key=lambda i: (rounds[i], events[i]["ts"]))
    return [events[i] for i in order]


Paced = Callable[[dict[str, float]], list[tuple[float, list[dict]]]]


def bench_pipeline(
    settings: Settings,
    version: Path,
    work: Path,
    modes: list[Mode],
    backlog: list[dict],
    paced: Paced,
    keep_topics: bool = False,
    full: tuple[list[dict], list[dict]] = ([], []),
) -> tuple[list[dict], list[dict]]:
    """Each mode on the same data: drain a backlog (sustained events/s), then latency at offered loads.

    Args:
        paced: from the events/s measured so far (by mode), the (rate, events) to offer a mode.
        keep_topics: leave each mode's topics on the broker (else deleted once it is measured).
        full: ``(fill, backlog)``: for every mode but the per-event one, after the first backlog, ``fill`` is
            sent and answered unmeasured (it brings every user's history to ``STREAMREC_MAX_LEN`` items), then
            the second backlog is drained and measured (``full_events_per_s``); the paced loads follow, on full
            histories, and ``measured`` holds that rate (the model's cost grows with the history length).

    Returns:
        (throughput rows, latency rows).
    """
    rows: list[dict] = []
    latency_rows: list[dict] = []
    measured: dict[str, float] = {}
    for mode in modes:
        worker = WorkerProcess.isolated(
            settings.kafka_bootstrap,
            version,
            work,
            prefix="bench",
            max_batch=mode.max_batch,
            metrics_port=0,
            log_level="WARNING",
            **({"shadow_model": version} if mode.shadow else {}),
        )
        if mode.noop:
            worker.argv = [sys.executable, "-c", NOOP_WORKER]
        ensure_worker_topics(worker.settings)
        print(f"{mode.path}: producing a backlog of {len(backlog)} events, then starting the worker", flush=True)
        send_events(settings.kafka_bootstrap, worker.events, backlog)
        collector = Collector(settings.kafka_bootstrap, worker.recommendations)
        worker.start(create_topics=False)
        try:
            drained = collector.wait_for(backlog, timeout=1800)
            measured[mode.path] = _drain_rate(backlog, drained)
            row = {
                "path": mode.path,
                "max_batch": mode.max_batch,
                "events": len(backlog),
                "records": len(drained),
                "events_per_s": measured[mode.path],
                "full_events_per_s": None,
            }
            fill, second = full
            if second and mode.max_batch > 1:
                print(f"{mode.path}: {len(fill)} events to fill every history, then {len(second)} more", flush=True)
                send_events(settings.kafka_bootstrap, worker.events, fill)
                collector.wait_for(fill, timeout=1800)
                send_events(settings.kafka_bootstrap, worker.events, second)
                measured[mode.path] = row["full_events_per_s"] = _drain_rate(
                    second, collector.wait_for(second, timeout=1800)
                )
            rows.append(row)
            for rate, chunk in [] if mode.noop else paced(measured):
                print(f"{mode.path}: {len(chunk)} events offered at {rate:,.0f}/s", flush=True)
                sent_rate = send_events(settings.kafka_bootstrap, worker.events, chunk, rate=rate)
                latencies = [r["produced_ts"] - r["event_ts"] for r in collector.wait_for(chunk, timeout=900)]
                latency_rows.append(
                    {
                        "path": mode.path,
                        "rate": rate,
                        "sent_rate": sent_rate,
                        "events": len(chunk),
                        "p50_ms": _pct(latencies, 50) * 1000,
                        "p95_ms": _pct(latencies, 95) * 1000,
                        "p99_ms": _pct(latencies, 99) * 1000,
                        "max_ms": max(latencies) * 1000,
                    }
                )
        finally:
            collector.close()
            worker.stop()
            if not keep_topics:
                worker.delete_topics()
    return rows, latency_rows


def _drain_rate(backlog: list[dict], answers: list[dict]) -> float:
    """Events/s of a drained backlog: its events over the time from the first answer's publish to the last's."""
    produced = [r["produced_ts"] for r in answers]
    return len(backlog) / (max(produced) - min(produced))


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    head = "  ".join(f"{title:>{len(title) + 2}}" for _, title, _ in columns)
    lines = [head]
    for row in rows:
        cells = [format(row[key], fmt) if row[key] is not None else "-" for key, _, fmt in columns]
        lines.append("  ".join(f"{cell:>{len(title) + 2}}" for cell, (_, title, _) in zip(cells, columns)))
    return "\n".join(lines)


def _offered(
    rates: list[str], seconds: float, fresh: list[dict], measured: dict[str, float]
) -> list[tuple[float, list[dict]]]:
    """The (rate, events) to offer a mode: ``half`` is half the micro-batched events/s measured in this run, on full
    histories when they were measured (so it is offered to the micro-batched path, measured before the latencies,
    and not to the per-event path)."""
    out, start = [], 0
    for rate_text in rates:
        rate = 0.5 * measured.get("micro-batched", 0.0) if rate_text == "half" else float(rate_text)
        if rate <= 0:
            continue
        count = max(100, int(rate * seconds))
        out.append((rate, fresh[start : start + count]))
        start += count
    return out


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
    devices = {"auto": ["cpu"] + (["cuda"] if cuda_available() else []), "cpu": ["cpu"], "cuda": ["cuda"]}
    engine_rows = bench_engine(version, devices[args.device], settings.ort_threads, settings.top_k)
    print(f"\nengine only (one onnxruntime call per batch, lists of STREAMREC_TOP_K={settings.top_k})")
    print(
        _table(
            engine_rows,
            [
                ("device", "device", "s"),
                ("batch", "batch", "d"),
                ("history", "items/user", "d"),
                ("width", "width", "d"),
                ("p50_ms", "p50 ms", ".3f"),
                ("p99_ms", "p99 ms", ".3f"),
                ("users_per_s", "users/s", ",.0f"),
            ],
        )
    )
    result = {"model": manifest["model_version"], "machine": machine, "engine": engine_rows}
    if args.new_items:
        from streams.tools.bench_items import run_new_items_bench

        ensure_kafka(settings.kafka_bootstrap)
        result["new_items"] = run_new_items_bench(settings, work, args.new_items, args.keep_topics)
    if not args.engine_only:
        ensure_kafka(settings.kafka_bootstrap)
        rates = [r.strip() for r in args.rates.split(",") if r.strip()]
        budget = sum(float(r) for r in rates if r != "half") + 20_000 * rates.count("half")
        fill_to = max(args.events, args.users * settings.max_len)  # every user's first max_len events
        events = bench_events(version, args.users, fill_to + args.events + int(budget * args.paced_seconds) + 1000)
        backlog, fill, second = (
            events[: args.events],
            events[args.events : fill_to],
            events[fill_to : fill_to + args.events],
        )
        fresh = events[fill_to + args.events :]
        freeze_heap()
        modes = pipeline_modes(settings.max_batch, args.shadow)
        if args.skip_ceiling:
            modes = [mode for mode in modes if not mode.noop]
        rows, latency_rows = bench_pipeline(
            settings,
            version,
            work,
            modes,
            backlog,
            lambda measured: _offered(rates, args.paced_seconds, fresh, measured),
            keep_topics=args.keep_topics,
            full=(fill, second),
        )
        print(
            f"\npipeline against Kafka at {settings.kafka_bootstrap}: sustained events/s, draining a backlog of "
            f"{args.events} events over {args.users} users: new users (at most {-(-args.events // args.users)} "
            f"items each), then, after {len(fill)} more events, the same number again with every history at "
            f"STREAMREC_MAX_LEN={settings.max_len} items (not for the per-event path, whose latencies are on "
            "short histories); the micro-batched latencies below are measured on full histories"
        )
        print(
            _table(
                rows,
                [
                    ("path", "path", "s"),
                    ("max_batch", "max_batch", "d"),
                    ("events_per_s", "events/s new users", ",.0f"),
                    ("full_events_per_s", "events/s full histories", ",.0f"),
                    ("records", "records", "d"),
                ],
            )
        )
        print(f"\nlatency from the event's ts to the publish, {args.paced_seconds:.0f} s at each offered rate")
        print(
            _table(
                latency_rows,
                [
                    ("path", "path", "s"),
                    ("rate", "events/s offered", ",.0f"),
                    ("sent_rate", "sent", ",.0f"),
                    ("p50_ms", "p50 ms", ",.1f"),
                    ("p95_ms", "p95 ms", ",.1f"),
                    ("p99_ms", "p99 ms", ",.1f"),
                    ("max_ms", "max ms", ",.1f"),
                ],
            )
        )
        if len(rows) >= 2:
            print(f"\nmicro-batched / per-event throughput: {rows[1]['events_per_s'] / rows[0]['events_per_s']:.1f}x")
        result["pipeline"] = rows
        result["latency"] = latency_rows
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")
    return 0

"""`streamrec demo`: local Kafka, simulated data, a trained model, the worker, a replay, and a report."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from streams.settings import Settings
from streams.tools.consume import records
from streams.tools.local_kafka import ensure_kafka, stop_kafka
from streams.tools.models import train
from streams.tools.produce import produce, read_events
from streams.tools.worker_process import WorkerProcess, metric_value


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


WARMUP_USER = "streamrec-warmup"


def hold_back(events: list[dict], n: int) -> tuple[list[dict], list[dict]]:
    """Split a log into (history, replay): each user's newest events, about ``n`` in all, replayed in time order."""
    by_user: dict[str, list[dict]] = {}
    for event in events:
        by_user.setdefault(event["user_id"], []).append(event)
    per_user = max(1, n // max(1, len(by_user)))
    history, replay = [], []
    for user_events in by_user.values():
        keep = max(1, len(user_events) - per_user)
        history.extend(user_events[:keep])
        replay.extend(user_events[keep:])
    replay.sort(key=lambda e: e["ts"])
    return history, replay


def wait_until_serving(
    bootstrap: str, events_topic: str, recs_topic: str, item_id: str, worker: WorkerProcess, timeout: float = 120.0
) -> float:
    """Send one warm-up event and wait for its recommendation: the worker has joined and is scoring.

    Returns:
        Seconds it took.
    """
    started = time.monotonic()
    warm = {"user_id": WARMUP_USER, "item_id": item_id, "event_type": "view", "ts": time.time()}
    produce(bootstrap, events_topic, iter([warm]), progress=False)
    for record in records(bootstrap, recs_topic, from_beginning=True, timeout=timeout):
        if record["user_id"] == WARMUP_USER:
            print(f"worker is serving ({time.monotonic() - started:.1f}s after the warm-up event)")
            return time.monotonic() - started
    code = worker.returncode()
    raise RuntimeError(
        f"the worker did not answer within {timeout:.0f}s" + (f" (it exited with {code})" if code is not None else "")
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _titles(items_path: Path) -> dict[str, str]:
    with items_path.open(encoding="utf-8") as fh:
        return {row["item_id"]: row.get("title", "") for row in map(json.loads, fh)}


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Run the whole loop once and print what happened; returns the exit code."""
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    started_kafka = False
    worker: WorkerProcess | None = None
    try:
        _step(f"Kafka at {settings.kafka_bootstrap}")
        started_kafka = ensure_kafka(settings.kafka_bootstrap)

        _step(f"simulating {args.users} users x {args.items} items")
        from streams.tools.simulate import simulate, write_dataset

        events, items = simulate(args.users, args.items, 40, 7)
        history, replay = hold_back(events, args.replay)
        data = work / "data"
        write_dataset(data, history, items)
        replay_path = data / "replay.jsonl"
        replay_path.write_text("".join(json.dumps(e) + "\n" for e in replay), encoding="utf-8")
        print(
            f"{len(history)} events to train on; the newest {len(replay)} (of {len({e['user_id'] for e in replay})} "
            "users, in time order) are held back to replay through the worker"
        )

        _step("training SASRec (CPU is fine; a few seconds per epoch)")
        models = work / "models"
        train(data / "events.jsonl", data / "items.jsonl", models, "--epochs", "40", "--max-minutes", "1.5")

        _step("starting the worker")
        worker = WorkerProcess.isolated(
            settings.kafka_bootstrap,
            models,
            work,
            prefix="demo",
            metrics_port=settings.metrics_port,
            log_level="WARNING",
        )
        worker.log_path = work / "worker.log"
        worker.start()
        topics = worker.settings
        print(
            f"worker pid {worker.pid}, log {worker.log_path}, metrics http://127.0.0.1:{settings.metrics_port}/metrics"
        )

        wait_until_serving(
            settings.kafka_bootstrap, topics.events_topic, topics.recommendations_topic, replay[0]["item_id"], worker
        )
        _step(f"replaying {len(replay)} events at {args.rate:.0f}/s")
        received: list[dict] = []
        expected_users = {e["user_id"] for e in replay}
        last_event = {e["user_id"]: e["event_id"] for e in replay}

        def collect() -> None:
            for record in records(
                settings.kafka_bootstrap, topics.recommendations_topic, from_beginning=True, timeout=180
            ):
                if record["user_id"] == WARMUP_USER:
                    continue
                received.append(record)
                done = {r["user_id"]: r["trigger_event_id"] for r in received}
                if all(done.get(u) == last_event[u] for u in expected_users):
                    return
                if not worker.alive():
                    return

        reader = threading.Thread(target=collect, daemon=True)
        reader.start()
        produce(
            settings.kafka_bootstrap,
            topics.events_topic,
            read_events(replay_path),
            rate=args.rate,
            total=len(replay),
            partitions=settings.partitions,
        )
        reader.join(timeout=180)
        if not worker.alive():
            print(f"the worker stopped unexpectedly; see {worker.log_path}", file=sys.stderr)
            return 1

        _step("results")
        titles = _titles(data / "items.jsonl")
        latencies = [(r["produced_ts"] - r["event_ts"]) * 1000 for r in received]
        users = {r["user_id"] for r in received}
        print(
            f"recommendation records: {len(received)} for {len(users)}/{len(expected_users)} users "
            f"(model {received[-1]['model_version'] if received else '-'})"
        )
        if latencies:
            print(
                f"event -> recommendation latency: p50 {_percentile(latencies, 50):.1f} ms, "
                f"p99 {_percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms"
            )
        if settings.metrics_port:
            _print_online_grades(worker.metrics())
        for record in received[-3:]:
            print(f"\nuser {record['user_id']} (after event {record['trigger_event_id']}):")
            for item in record["items"][:5]:
                because = f"  because {titles.get(item['because'], item['because'])}" if item["because"] else ""
                print(f"  {item['score']:7.3f}  {titles.get(item['item_id'], item['item_id'])}{because}")
        complete = len(users) == len(expected_users)
        print("\ndemo complete" if complete else "\ndemo incomplete: some users got no recommendation in time")
        return 0 if complete else 1
    finally:
        if worker is not None:
            worker.stop()
        if started_kafka:
            stop_kafka()


def _print_online_grades(metrics_text: str) -> None:
    """The worker's own online evaluation: each replayed event against the list its user was served before."""
    graded = metric_value(metrics_text, "streamrec_online_graded_total", role="live")
    if not graded:
        return
    ndcg = metric_value(metrics_text, "streamrec_online_ndcg_total", role="live", k="10") / graded
    hits = metric_value(metrics_text, "streamrec_online_hits_total", role="live", k="10") / graded
    print(
        f"online grading: {graded:.0f} replayed events graded against the list their user was served just "
        f"before: NDCG@10 {ndcg:.3f}, hit@10 {hits:.3f}"
    )

"""`streamrec bench` runs end to end (small numbers) and reports every table; no speed is asserted."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.kafka


def test_bench_reports_engine_pipeline_and_latency_tables(kafka, model_root, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            "bench",
            "--events",
            "400",
            "--users",
            "100",
            "--paced-seconds",
            "1",
            "--rates",
            "100,half",
            "--json",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "STREAMREC_MODEL_DIR": str(model_root), "STREAMREC_KAFKA_BOOTSTRAP": kafka},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads(out.read_text())
    assert [(row["device"], row["batch"]) for row in report["engine"]][:5] == [
        ("cpu", b) for b in (1, 8, 64, 256, 1024)
    ]
    assert all(row["users_per_s"] > 0 for row in report["engine"])
    max_len = report["engine"][0]["history"]
    assert [(row["batch"], row["history"], row["width"]) for row in report["engine"]] == [
        *((b, max_len, max_len) for b in (1, 8, 64, 256, 1024)),
        *((b, 10, 10) for b in (64, 256)),
    ]
    assert [row["path"] for row in report["pipeline"]] == [
        "per-event",
        "micro-batched",
        "pipeline ceiling (no-op scorer)",
    ]
    per_event, batched, ceiling = report["pipeline"]
    assert per_event["records"] == 400  # batch of 1: one record per event
    assert 0 < batched["records"] <= 400  # a user with several events in a batch is scored once
    assert 0 < ceiling["records"] <= 400 and ceiling["events_per_s"] > 0
    # then every history filled to max_len and a second backlog drained, except on the per-event path
    assert per_event["full_events_per_s"] is None
    assert batched["full_events_per_s"] > 0 and ceiling["full_events_per_s"] > 0
    half = batched["full_events_per_s"] / 2
    # 'half' is half the micro-batched capacity: offered to that path only (it would swamp the per-event one)
    assert [(row["path"], row["rate"]) for row in report["latency"]] == [
        ("per-event", 100.0),
        ("micro-batched", 100.0),
        ("micro-batched", half),
    ]
    assert all(0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] for row in report["latency"])
    # the paced sender keeps to the offered rate: it may fall behind on a busy machine, never run ahead of it
    assert all(0 < row["sent_rate"] <= row["rate"] * 1.05 for row in report["latency"])
    assert "micro-batched / per-event throughput" in result.stdout


def test_every_slice_of_the_bench_events_is_spread_over_all_users(model_root):
    from serving.artifact import resolve_version
    from streams.tools.bench import bench_events

    events = bench_events(resolve_version(model_root), 200, 8_000)
    backlog = events[:1_000]
    assert len({e["user_id"] for e in backlog}) == 200  # 5 events each, not a few users' long timelines
    per_user: dict[str, list[float]] = {}
    for event in events:
        per_user.setdefault(event["user_id"], []).append(event["ts"])
    assert len(per_user) == 200
    assert all(ts == sorted(ts) for ts in per_user.values())  # each user's own order is kept

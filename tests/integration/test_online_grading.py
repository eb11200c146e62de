"""Online grading, shadow scoring and the promotion gate against the real broker.

Model A is the trained test model; model B is A with its item ids scrambled (the same graph and rows, each row
under another item's id: a deliberately worse model in the same format). Held-out users of the simulated world
(never in training) are replayed through a worker serving one with the other as shadow. The online metrics must
agree with the same model's offline grades of the same events, and `streamrec promote` must refuse B and promote A.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from kafka import KafkaProducer

from serving.artifact import MANIFEST, list_versions, load_artifact, resolve_version
from serving.engine import Engine
from serving.publish import new_tmp_dir, publish
from streams.grading import grade
from streams.settings import Settings
from streams.tools.kafka_io import read_topic
from streams.tools.promote import MANIFEST_OWN_KEYS
from streams.tools.simulate import simulate
from streams.tools.worker_process import metric_value
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.kafka

TRAINED_USERS = 120  # the `dataset` fixture: simulate(120, 150, 25, 11)
HELD_OUT = 80


def held_out_sequences() -> dict[str, list[str]]:
    """Users of the same simulated world (same items and trails) that the model never saw."""
    events, _ = simulate(TRAINED_USERS + HELD_OUT, 150, 25, 11)
    sequences: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if int(event["user_id"][1:]) >= TRAINED_USERS:
            sequences[event["user_id"]].append(event["item_id"])
    assert len(sequences) == HELD_OUT
    return dict(sequences)


def republish(source: Path, root: Path, scramble: bool = False) -> Path:
    """Publish ``source``'s files as a new version of ``root``; ``scramble`` gives every row another item's id."""
    time.sleep(1.05)  # version names are per second: every version of this test gets its own
    tmp = new_tmp_dir(root)
    for path in source.iterdir():
        if path.is_file() and path.name != MANIFEST:
            shutil.copy2(path, tmp / path.name)
    if scramble:
        header, *rows = (tmp / "items.tsv").read_text(encoding="utf-8").splitlines()
        names = [row.split("\t", 1)[1] for row in rows]
        random.Random(3).shuffle(names)
        lines = [header] + [f"{row.split(chr(9), 1)[0]}\t{name}" for row, name in zip(rows, names)]
        (tmp / "items.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = json.loads((source / MANIFEST).read_text())
    return publish(tmp, {k: v for k, v in manifest.items() if k not in MANIFEST_OWN_KEYS})


def offline_ranks(version: Path, sequences: dict[str, list[str]]) -> dict[tuple[str, int], int | None]:
    """(user, position) -> the rank of that event's item in the list the model makes from the items before it."""
    engine = Engine(load_artifact(version), device="cpu")
    keys = [(user, t) for user, items in sequences.items() for t in range(1, len(items))]
    clicks = [(["click"] * t, [""] * t) for _, t in keys]  # what `replay` sends: clicks without a scenario
    lists = engine.recommend([sequences[user][:t] for user, t in keys], 10, behaviours=clicks)
    return {
        (user, t): grade(sequences[user][t], [i.item_id for i in served], set(sequences[user][:t])).rank
        for (user, t), served in zip(keys, lists)
    }


def ndcg(rank: int | None) -> float:
    return 1.0 / math.log2(rank + 2) if rank is not None and rank < 10 else 0.0


def replay(worker, sequences: dict[str, list[str]]) -> dict[tuple[int, int], tuple[str, int]]:
    """Send every user's events in rounds (each user's t-th event, then, once the worker has answered them all, a
    pause), so that most events arrive after their user's previous list was published.

    Returns (partition, offset) -> (user, position)."""
    producer = KafkaProducer(bootstrap_servers=worker.bootstrap, linger_ms=5)
    sent = {}
    try:
        for t in range(max(len(items) for items in sequences.values())):
            futures = []
            for user, items in sequences.items():
                if t < len(items):
                    value = {"user_id": user, "item_id": items[t], "event_type": "click", "ts": time.time()}
                    futures.append(
                        ((user, t), producer.send(worker.events, key=user.encode(), value=json.dumps(value).encode()))
                    )
            producer.flush()
            for where, future in futures:
                meta = future.get(timeout=10)
                sent[(meta.partition, meta.offset)] = where
            # the next round only once this one is answered (a worker still starting would otherwise read two
            # rounds as one batch, and a whole round would go ungraded), then a pause
            deadline = time.monotonic() + 20
            while metric_value(worker.metrics(), "streamrec_recommendations_total") < len(sent):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            time.sleep(0.4)
    finally:
        producer.close()
    return sent


def run_and_grade(start_worker, root: Path, sequences) -> tuple[object, dict, list[dict]]:
    worker = start_worker(root, model_poll_seconds="0.5")
    sent = replay(worker, sequences)
    total = len(sent)

    def settled():
        worker.assert_alive()
        text = worker.metrics()
        return (
            metric_value(text, "streamrec_events_total") == total
            and metric_value(text, "streamrec_consumer_lag_messages") == 0
            and text
        )

    wait_until(settled, timeout=90, what=f"the worker to apply {total} events")
    time.sleep(1.0)  # the last batch's grades are published after its recommendations
    grades = [json.loads(r.value) for r in read_topic(worker.bootstrap, worker.env["STREAMREC_GRADES_TOPIC"])]
    return worker, sent, grades


def promote(worker, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streams", "promote", "--min-events", "500", *flags],
        env=worker.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def online_ndcg(text: str, role: str) -> tuple[float, float]:
    graded = metric_value(text, "streamrec_online_graded_total", role=role)
    return graded, metric_value(text, "streamrec_online_ndcg_total", role=role, k="10") / graded


def test_online_grades_match_offline_and_promote_refuses_a_worse_shadow_then_promotes_a_better_one(
    start_worker, model_root, tmp_path
):
    sequences = held_out_sequences()
    source = resolve_version(model_root)
    root_a = tmp_path / "serving-a"
    version_a = republish(source, root_a)
    shadow_b = republish(source, root_a / "shadow", scramble=True)
    offline_a, offline_b = offline_ranks(version_a, sequences), offline_ranks(shadow_b, sequences)
    mean = lambda ranks: sum(map(ndcg, ranks.values())) / len(ranks)  # noqa: E731
    off_a, off_b = mean(offline_a), mean(offline_b)
    assert off_a > off_b + 0.1, f"the scrambled model must be clearly worse offline: {off_a:.3f} vs {off_b:.3f}"

    # 1. A live, B shadow: the online grades are the offline ones of the same events
    worker, sent, grades = run_and_grade(start_worker, root_a, sequences)
    text = worker.metrics()
    graded_a, on_a = online_ndcg(text, "live")
    graded_b, on_b = online_ndcg(text, "shadow")
    possible = len(offline_a)  # every event but each user's first
    assert graded_a == graded_b >= 0.8 * possible, (graded_a, graded_b, possible)
    assert len({(g["partition"], g["offset"]) for g in grades}) == graded_a
    agree_a = sum(g["live_rank"] == offline_a[sent[(g["partition"], g["offset"])]] for g in grades)
    agree_b = sum(g["shadow_rank"] == offline_b[sent[(g["partition"], g["offset"])]] for g in grades)
    assert agree_a >= 0.98 * len(grades) and agree_b >= 0.98 * len(grades), (agree_a, agree_b, len(grades))
    print(f"\nNDCG@10 online/offline: A {on_a:.4f}/{off_a:.4f}, B {on_b:.4f}/{off_b:.4f}; {graded_a:.0f} graded")
    assert abs(on_a - off_a) < 0.03 and abs(on_b - off_b) < 0.03, (on_a, off_a, on_b, off_b)
    assert abs((on_a - on_b) - (off_a - off_b)) < 0.03
    assert {g["live"] for g in grades} == {version_a.name} and {g["shadow"] for g in grades} == {shadow_b.name}
    shadow_calls = metric_value(text, "streamrec_shadow_inference_seconds_count")
    assert shadow_calls > 0 and metric_value(text, "streamrec_recommendations_total") >= len(sent) * 0.5
    # no recommendation came from the shadow
    records = read_topic(worker.bootstrap, worker.recommendations)
    assert {json.loads(r.value)["model_version"] for r in records} == {version_a.name}

    refused = promote(worker)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused: worse" in refused.stdout and f"{int(graded_a):,}" in refused.stdout, refused.stdout
    assert [p.name for p in list_versions(root_a)] == [version_a.name]  # nothing changed
    assert list_versions(root_a / "shadow") == [shadow_b]
    worker.stop()

    # 2. roles swapped: B live, A shadow; promote publishes A as the newest live version and the worker swaps to it
    root_b = tmp_path / "serving-b"
    version_b = republish(shadow_b, root_b)
    shadow_a = republish(version_a, root_b / "shadow")
    worker, sent, grades = run_and_grade(start_worker, root_b, sequences)
    text = worker.metrics()
    _, on_live = online_ndcg(text, "live")
    _, on_shadow = online_ndcg(text, "shadow")
    assert on_shadow > on_live + 0.1
    promoted = promote(worker)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "promoted (better" in promoted.stdout, promoted.stdout
    newest = list_versions(root_b)[-1]
    assert newest.name not in (version_b.name, shadow_a.name)
    manifest = json.loads((newest / MANIFEST).read_text())
    assert manifest["promoted_from"]["version"] == shadow_a.name and manifest["promoted_from"]["events"] >= 500
    assert (newest / "items.tsv").read_bytes() == (version_a / "items.tsv").read_bytes()
    assert list_versions(root_b / "shadow") == []  # moved aside: no longer a shadow
    wait_until(
        lambda: metric_value(worker.metrics(), "streamrec_model_info", version=newest.name) == 1,
        timeout=30,
        what="the worker to serve the promoted version",
    )


def test_served_lists_survive_a_kill_in_the_table_and_grade_on_the_next_worker(start_worker, model_root):
    """A user's served list is written into their table value with the partition's first batch once it is due
    (``STREAMREC_SERVED_WRITE_DELAY``, default 5 s): after kill -9, a worker restoring the table from its changelog
    grades the user's next event against it."""
    sequences = held_out_sequences()
    users = sorted(sequences)[:40]
    stayers, movers = users[::2], users[1::2]
    worker = start_worker(model_root, partitions="2", model_poll_seconds="60")

    def send(round_users: list[str], t: int) -> set[int]:
        producer = KafkaProducer(bootstrap_servers=worker.bootstrap, linger_ms=5)
        try:
            futures = [
                producer.send(
                    worker.events,
                    key=user.encode(),
                    value=json.dumps(
                        {"user_id": user, "item_id": sequences[user][t], "event_type": "click", "ts": time.time()}
                    ).encode(),
                )
                for user in round_users
            ]
            producer.flush()
            return {future.get(timeout=10).partition for future in futures}
        finally:
            producer.close()

    def applied(on, total):
        def check():
            on.assert_alive()
            return metric_value(on.metrics(), "streamrec_events_total") == total

        wait_until(check, timeout=60, what=f"{total} events applied")

    assert send(users, 0) == {0, 1}
    applied(worker, len(users))
    time.sleep(Settings().served_write_delay + 1.0)  # every first list published, and due for the table
    assert send(movers, 1) == {0, 1}  # each partition's next batch writes the stayers' lists into their values
    applied(worker, len(users) + len(movers))
    time.sleep(1.0)
    worker.kill()

    successor = start_worker(
        model_root,
        **{
            "app_id": worker.env["STREAMREC_APP_ID"],
            "events_topic": worker.events,
            "recommendations_topic": worker.recommendations,
            "dlq_topic": worker.dlq,
            "grades_topic": worker.env["STREAMREC_GRADES_TOPIC"],
            "items_topic": worker.env["STREAMREC_ITEMS_TOPIC"],
            "partitions": "2",
            "model_poll_seconds": "60",
        },
    )
    send(users, 2)
    applied(successor, len(users))
    graded = metric_value(successor.metrics(), "streamrec_online_graded_total", role="live")
    assert graded >= len(stayers), f"{graded} of {len(users)} first events after the kill graded"

"""Two workers in one group: a rebalance moves users' sequences with their partitions (real Kafka)."""

from __future__ import annotations

import json
import random
import time

import pytest

from streams.tools.worker_process import metric_value
from tests.conftest import wait_until
from tests.integration.test_worker_kafka import Collector, event, final_triggers, send_all

pytestmark = pytest.mark.kafka

USERS = [f"rb-{n}" for n in range(40)]


def test_a_second_worker_takes_over_partitions_with_their_state(start_worker, model_root, dataset):
    items = [json.loads(line)["item_id"] for line in (dataset / "items.jsonl").read_text().splitlines()]
    rng = random.Random(9)
    history: dict[str, list[str]] = {u: [] for u in USERS}

    def batch(tag: str, per_user: int) -> list[tuple[bytes, bytes]]:
        messages = []
        for n in range(per_user):
            for user in USERS:
                item = rng.choice([i for i in items if i not in history[user]])
                history[user].append(item)
                messages.append((user.encode(), event(user, item, time.time(), f"{tag}-{user}-{n}")))
        return messages

    first = start_worker(model_root, top_k=10)
    out = Collector(first.bootstrap, first.recommendations)
    try:
        before = batch("before", 3)
        send_all(first.bootstrap, first.events, before)
        want = {u: f"before-{u}-2" for u in USERS}
        wait_until(lambda: final_triggers(out.poll(), USERS) == want, timeout=90, what="the first worker's answers")

        second = start_worker(
            model_root,
            top_k=10,
            app_id=first.env["STREAMREC_APP_ID"],
            events_topic=first.events,
            recommendations_topic=first.recommendations,
            dlq_topic=first.dlq,
        )
        wait_until(
            lambda: "streamrec_consumer_lag_messages{partition=" in second.metrics(),
            timeout=90,
            what="the second worker to be assigned a partition",
        )
        after = batch("after", 2)
        send_all(first.bootstrap, first.events, after)
        want = {u: f"after-{u}-1" for u in USERS}
        try:
            wait_until(lambda: final_triggers(out.poll(), USERS) == want, timeout=120, what="the last answers")
        except AssertionError:
            wrong = {u: t for u, t in final_triggers(out.poll(), USERS).items() if t != want[u]}
            counts = {w.log_path.name: _counters(w) for w in (first, second)}
            again = Collector(first.bootstrap, first.recommendations)  # tells a stuck reader from a stuck worker
            try:
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    reread = again.poll()
                wrong_reread = {u: t for u, t in final_triggers(reread, USERS).items() if t != want[u]}
            finally:
                again.close()
            raise AssertionError(
                f"after the rebalance, users whose newest answer is not for their last event: "
                f"{wrong}; read again from the start: {wrong_reread}; the workers' counters: {counts}"
            ) from None
        time.sleep(2.5)  # one housekeeping tick
        applied = [metric_value(w.metrics(), "streamrec_events_total") for w in (first, second)]
        lag_first, lag_second = first.metrics(), second.metrics()
    finally:
        out.close()

    assert sum(applied) == len(before) + len(after), f"each event applied exactly once, got {applied}"
    assert applied[1] > 0, "the second worker processed events of the partitions it took over"
    newest = {}
    for _, record in out.records:
        newest[record["user_id"]] = record
    for user in USERS:
        recommended = {i["item_id"] for i in newest[user]["items"]}
        assert not recommended & set(history[user]), f"{user}'s whole history masks the list after the rebalance"
    # each worker reports lag only for the partitions it owns now
    owned = [{p for p in ("0", "1") if f'partition="{p}"' in text} for text in (lag_first, lag_second)]
    assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == {"0", "1"}, owned


def _counters(worker) -> dict[str, object]:
    """What a worker reports of its progress, for a failure message (or why it could not)."""
    try:
        text = worker.metrics()
    except Exception as exc:  # a dead worker's metrics are part of the diagnosis
        return {"metrics": repr(exc), "alive": worker.alive()}
    lines = [
        line
        for line in text.splitlines()
        if line.startswith(("streamrec_events_total", "streamrec_consumer_lag", "streamrec_events_refetched"))
    ]
    return {"alive": worker.alive(), "metrics": lines}

"""The worker keeps each event's type and scenario and feeds them to a model that reads behaviour; a version
exported without behaviour is still served (real broker, really trained models)."""

from __future__ import annotations

import json
import time

import pytest

from serving.artifact import load_artifact, resolve_version
from serving.engine import Engine
from streams.tools.models import train
from tests.conftest import ROOT, wait_until
from tests.integration.test_worker_kafka import Collector, send_all

pytestmark = pytest.mark.kafka

HISTORY = ["i3", "i17", "i42", "i8", "i99"]


@pytest.fixture(scope="module")
def items_only_root(tmp_path_factory, dataset):
    """A version trained with --no-behaviour: what every version exported before behaviour looks like."""
    root = tmp_path_factory.mktemp("items-only-models")
    train(dataset / "events.jsonl", None, root, "--epochs", "3", "--no-text", "--no-behaviour", "--seed", "1", cwd=ROOT)
    return root


def _event(user, item, n, event_type, scenario):
    value = {"user_id": user, "item_id": item, "event_type": event_type, "ts": time.time(), "event_id": f"{user}-{n}"}
    if scenario is not None:
        value["scenario"] = scenario
    return user.encode(), json.dumps(value).encode()


def _serve(start_worker, root, steps):
    """Send ``{user: [(event_type, scenario)] aligned with HISTORY]}``; the newest list of each user."""
    worker = start_worker(root, top_k=5, scenario_filter="false")
    out = Collector(worker.bootstrap, worker.recommendations)
    messages = [
        _event(user, item, n, kind, scenario)
        for user, behaviour in steps.items()
        for n, (item, (kind, scenario)) in enumerate(zip(HISTORY, behaviour))
    ]
    last = {user: f"{user}-{len(HISTORY) - 1}" for user in steps}
    try:
        send_all(worker.bootstrap, worker.events, messages)

        def done():
            worker.assert_alive()
            triggers = {r["user_id"]: r["trigger_event_id"] for _, r in out.poll()}
            return all(triggers.get(u) == t for u, t in last.items())

        wait_until(done, timeout=90, what="a list after each user's last event")
    finally:
        out.close()
    newest = {}
    for _, record in out.records:
        if record["trigger_event_id"] == last[record["user_id"]]:
            newest[record["user_id"]] = [(i["item_id"], i["score"]) for i in record["items"]]
    return newest


def test_the_worker_feeds_each_events_type_and_scenario_to_the_model(start_worker, model_root):
    engine = Engine(load_artifact(resolve_version(model_root)), device="cpu")
    assert engine.behaviours is not None  # the simulated events differ in type: the default model reads them
    steps = {
        "viewer": [("view", None)] * len(HISTORY),
        "buyer": [("click", None), ("add_to_cart", None), ("purchase", "shop")] + [("purchase", None)] * 2,
    }
    served = _serve(start_worker, model_root, steps)
    behaviours = [([k for k, _ in s], [sc or "" for _, sc in s]) for s in steps.values()]
    expected = engine.recommend([HISTORY, HISTORY], 5, behaviours=behaviours)
    for user, want in zip(steps, expected):
        got = served[user]
        assert [item for item, _ in got] == [w.item_id for w in want]
        assert [score for _, score in got] == pytest.approx([w.score for w in want], abs=1e-4)
    # same items, other behaviour: other scores (the behaviour reached the model)
    assert [s for _, s in served["viewer"]] != pytest.approx([s for _, s in served["buyer"]], abs=1e-4)


def test_a_version_exported_without_behaviour_is_still_served(start_worker, items_only_root):
    engine = Engine(load_artifact(resolve_version(items_only_root)), device="cpu")
    assert engine.behaviours is None
    served = _serve(start_worker, items_only_root, {"u-old": [("purchase", "shop")] * len(HISTORY)})
    [want] = engine.recommend([HISTORY], 5)
    assert [item for item, _ in served["u-old"]] == [w.item_id for w in want]

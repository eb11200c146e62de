"""Behaviour-aware sequences: event types and scenarios through training, export and the serving engine."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from encoders.checkpoint import load_checkpoint
from encoders.pipeline import export_checkpoint
from serving.artifact import INPUTS, NEW_ROW_INPUTS, ArtifactError, load_artifact
from serving.behaviour import OTHER, Behaviours
from serving.engine import Engine
from tests.model.tiny import exported_scores

HISTORY = ["i3", "i7", "i12", "i40", "i5"]


def _engine(outcome) -> Engine:
    return Engine(load_artifact(outcome.version_dir), device="cpu", max_batch=8)


def test_the_engine_feeds_each_positions_behaviour_and_matches_torch(trained):
    engine = _engine(trained)
    kinds = engine.behaviours.event_types
    types = [kinds[k % len(kinds)] for k in range(len(HISTORY))]
    scenarios = [""] * len(HISTORY)
    [got] = engine.recommend([HISTORY], 5, behaviours=[(types, scenarios)])
    seq = torch.from_numpy(engine.encode([HISTORY]))
    steps = engine.behaviours.encode(types, scenarios)  # [T, 2]
    behaviour = torch.zeros((1, seq.shape[1], 2), dtype=torch.int64)
    behaviour[0, -len(HISTORY) :] = torch.from_numpy(steps)
    scores = exported_scores(trained, seq, behaviour)[0]  # seen items excluded
    expected = np.argsort(-scores)[:5]
    assert [item.item_id for item in got] == [engine.rows.names[i] for i in expected]
    np.testing.assert_allclose([item.score for item in got], scores[expected], atol=1e-4)


def test_behaviour_changes_the_list_and_unknown_behaviour_reads_as_other(trained):
    engine = _engine(trained)
    n = len(HISTORY)
    viewed = engine.recommend([HISTORY], 10, behaviours=[(["view"] * n, [""] * n)])[0]
    bought = engine.recommend([HISTORY], 10, behaviours=[(["purchase"] * n, [""] * n)])[0]
    assert [i.score for i in viewed] != [i.score for i in bought]
    # a value kept before sequences had behaviour (no types), unknown values and no behaviour at all: "other"
    old = engine.recommend([HISTORY], 10, behaviours=[((), ())])[0]
    unknown = engine.recommend([HISTORY], 10, behaviours=[(["refund"] * n, ["moon"] * n)])[0]
    plain = engine.recommend([HISTORY], 10)[0]
    assert old == unknown == plain
    # only the newest positions known: they are right-aligned with the newest items
    steps = engine.encode_behaviour(engine.encode([HISTORY]), [(["purchase"], ["zzz"])])
    assert steps[0, 0, -n:].tolist() == [OTHER] * (n - 1) + [engine.behaviours.encode(["purchase"], [""])[0, 0]]
    assert steps[1, 0, -1] == OTHER and (steps[:, 0, :-n] == 0).all()


def test_a_version_exported_without_behaviour_is_still_served(trained_items_only):
    manifest = json.loads((trained_items_only.version_dir / "manifest.json").read_text())
    assert manifest["inputs"] == list(INPUTS) + list(NEW_ROW_INPUTS) and manifest["behaviour"] is None
    engine = _engine(trained_items_only)
    assert engine.behaviours is None
    n = len(HISTORY)
    with_behaviour = engine.recommend([HISTORY], 5, behaviours=[(["purchase"] * n, ["shop"] * n)])
    assert with_behaviour == engine.recommend([HISTORY], 5) and len(with_behaviour[0]) == 5


def test_a_graph_that_reads_behaviour_needs_the_vocabularies_in_its_manifest(trained, tmp_path):
    copy = tmp_path / trained.version_dir.name
    shutil.copytree(trained.version_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["behaviour"] = None
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="no 'behaviour' vocabularies"):
        Engine(load_artifact(copy), device="cpu")


def test_the_checkpoint_keeps_the_vocabularies_and_re_exports_them(trained, tmp_path):
    ckpt = load_checkpoint(trained.checkpoint)
    assert ckpt.behaviours == Behaviours.from_manifest(_engine(trained).artifact.manifest["behaviour"])
    again = export_checkpoint(trained.checkpoint, tmp_path / "models")
    assert json.loads((again / "manifest.json").read_text())["behaviour"] == ckpt.behaviours.to_manifest()


def test_vocabularies_are_bounded_and_most_frequent_first():
    b = Behaviours.build(["view"] * 5 + ["purchase"] * 2 + [f"t{k}" for k in range(40)], ["shop", "news", "shop"])
    assert b.event_types[:2] == ("view", "purchase") and b.n_types == 16 + 2
    assert b.scenarios == ("shop", "news")
    ids = b.encode(["view", "t39", None], ["news", "", "shop"])
    assert ids.tolist() == [[2, 2 + 1], [OTHER, OTHER], [OTHER, 2]]


@pytest.mark.parametrize("fixture", ["trained", "trained_items_only"])
def test_the_exported_version_through_the_engine_gives_trainings_test_numbers(fixture, sim_dir, request):
    from encoders.pipeline import DataSource, evaluate_version

    outcome = request.getfixturevalue(fixture)
    served = evaluate_version(outcome.version_dir, DataSource(events=sim_dir / "events.jsonl"))["sasrec"]
    trained = outcome.metrics["sasrec"]  # torch, on the same test split, behaviour included when read
    assert served["ndcg@10"] == pytest.approx(trained["ndcg@10"], abs=2e-3)
    assert served["recall@10"] == pytest.approx(trained["recall@10"], abs=2e-3)


def test_events_keep_their_type_and_scenario_in_time_order(tmp_path):
    from encoders.data import load_events_jsonl

    rows = [
        {"user_id": "u1", "item_id": "b", "event_type": "purchase", "ts": 2.0, "scenario": "shop"},
        {"user_id": "u1", "item_id": "a", "event_type": "view", "ts": 1.0},
        {"user_id": "u2", "item_id": "c", "event_type": "click", "ts": 1.5, "scenario": "news"},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_events_jsonl(path)
    assert data.sequences == (("a", "b"), ("c",))
    assert data.behaviour == ((("view", ""), ("purchase", "shop")), (("click", "news"),))
    assert data.has_behaviour


def test_the_ablation_trains_both_variants_on_one_split_and_breaks_down_by_event_type(tmp_path, capsys):
    from encoders.cli import main
    from streams.tools.simulate import write_dataset
    from streams.tools.simulate_behaviour import simulate_behaviour

    write_dataset(tmp_path, *simulate_behaviour(150, 120, 12, 4))
    out = tmp_path / "ablation.json"
    args = ["evaluate", "--behaviour-ablation", "--events", str(tmp_path / "events.jsonl"), "--seeds", "3"]
    hparams = ["--epochs", "2", "--dim", "16", "--max-len", "10", "--layers", "1", "--no-progress"]
    assert main([*args, *hparams, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [(r["seed"], r["variant"]) for r in report["runs"]] == [(3, "behaviour"), (3, "items only")]
    kinds = set(report["users_by_event_type"])
    assert kinds >= {"view", "purchase"} and sum(report["users_by_event_type"].values()) == 150
    for run in report["runs"]:
        assert set(run["by_event_type"]) == kinds and 0.0 <= run["test"]["ndcg@10"] <= 1.0
    assert report["runs"][0]["test"] != report["runs"][1]["test"]  # two different models
    table = capsys.readouterr().out
    assert "after purchase" in table and "items only" in table and "cooccurrence" in table
    # data without behaviour is refused with a sentence
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"user_id": "u", "item_id": "a", "event_type": "click", "ts": 1}\n')
    assert main(["evaluate", "--behaviour-ablation", "--events", str(plain)]) == 2
    assert "differ in event type or scenario" in capsys.readouterr().err

"""Cold-start evaluation: held-out items ranked from their text (encoders/coldstart.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from encoders.cli import main
from encoders.coldstart import cold_split, expected_random, strict_cold_items
from encoders.data import DataError, Interactions, ItemInfo


def _data(seqs: list[list[str]]) -> Interactions:
    items = {i: ItemInfo(i, f"title {i}") for s in seqs for i in s}
    items["c9"] = ItemInfo("c9", "catalog only")
    return Interactions("t", tuple(f"u{k}" for k in range(len(seqs))), tuple(tuple(s) for s in seqs), items)


def test_strict_cold_items_are_only_test_targets():
    seqs = [["a", "b", "c", "x"], ["a", "b", "y"], ["b", "x", "a", "c"], ["z", "w"]]
    # x also occurs mid-sequence; w is the last item of a 2-event user (training only)
    assert strict_cold_items(tuple(tuple(s) for s in seqs)) == {"y"}
    cs = cold_split(_data(seqs), protocol="strict")
    assert cs.info["cold_test_users"] == 1 and cs.info["events_removed"] == 0
    y = cs.vocab.encode("y")
    assert list(cs.cold) == [y] and y >= cs.n_warm_rows  # cold rows come after the warm ones
    assert cs.vocab.encode("c9") >= cs.n_warm_rows  # catalog-only items stay in the catalog
    assert all(y not in s for s in cs.split.train_valid)
    assert list(cs.cold_test.targets) == [y]


def test_random_holdout_removes_cold_items_from_training():
    rng = np.random.default_rng(0)
    seqs = [[f"i{j}" for j in rng.choice(40, size=8, replace=False)] for _ in range(60)]
    cs = cold_split(_data(seqs), protocol="random", holdout=0.25, seed=3)
    assert cs.protocol == "random" and len(cs.cold) == 10
    for s in cs.split.train_valid:  # nothing cold before the test targets
        assert not np.isin(s, cs.cold).any()
        assert (np.asarray(s) < cs.n_warm_rows).all()
    assert np.isin(cs.cold_test.targets, cs.cold).all() and len(cs.cold_test) > 0
    for h in cs.cold_test.histories:
        assert len(h) >= 2 and not np.isin(h, cs.cold).any()
    kept = sum(1 for s in seqs if s[-1] in {cs.vocab.external(int(c)) for c in cs.cold})
    assert len(cs.cold_test) + cs.info["cold_targets_dropped"] == kept
    again = cold_split(_data(seqs), protocol="random", holdout=0.25, seed=3)
    assert np.array_equal(again.cold, cs.cold)  # seeded


def test_no_cold_target_is_a_clear_error():
    with pytest.raises(DataError, match="cold target"):
        cold_split(_data([["a", "b", "c"], ["a", "c", "b"]]), protocol="strict")


def test_expected_random():
    assert expected_random(10)["recall@10"] == 1.0
    assert expected_random(40)["recall@10"] == 0.25
    assert expected_random(1)["ndcg@10"] == 1.0


def test_cli_evaluate_needs_model_or_cold_start(sim_dir, capsys):
    events = str(sim_dir / "events.jsonl")
    assert main(["evaluate", "--events", events]) == 2
    assert main(["evaluate", "--cold-start", "--model", "x", "--events", events]) == 2
    assert "drop --model" in capsys.readouterr().err


def test_text_model_ranks_cold_items_better_than_popularity(sim_dir, tmp_path, capsys):
    """SASRec with text, trained without a quarter of the items, ranks those items for the
    users whose test target is one of them far above chance; popularity cannot (the held-out
    items have no training interactions)."""
    out = tmp_path / "cold.json"
    rc = main(
        [
            "evaluate",
            "--cold-start",
            "--events",
            str(sim_dir / "events.jsonl"),
            "--items",
            str(sim_dir / "items.jsonl"),
            "--cold-protocol",
            "random",
            "--cold-holdout",
            "0.25",
            "--max-len",
            "20",
            "--dim",
            "32",
            "--layers",
            "1",
            "--dropout",
            "0.1",
            "--lr",
            "3e-3",
            "--batch-size",
            "32",
            "--epochs",
            "15",
            "--patience",
            "4",
            "--seed",
            "1",
            "--device",
            "cpu",
            "--threads",
            "2",
            "--no-progress",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "ranking among the 24 cold items only" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    split, m = report["split"], report["metrics"]
    assert split["cold_items"] == 24 and split["cold_test_users"] >= 20
    cold, full = m["cold_only"], m["full"]
    rand = cold["random_expected"]["ndcg@10"]
    # among the cold items: text-based scoring well above chance and popularity (all ties)
    assert cold["sasrec_text"]["ndcg@10"] > rand + 0.15
    assert cold["sasrec_text"]["ndcg@10"] > cold["popularity"]["ndcg@10"] + 0.15
    assert cold["text_similarity"]["ndcg@10"] > rand + 0.1
    # over the whole catalog popularity never reaches an item without training interactions
    assert full["popularity"]["recall@10"] == 0.0
    assert full["sasrec_text"]["recall@10"] > 0.0

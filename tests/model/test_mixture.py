"""New rows against trained rows: the mixture of serving/mixture.py through the engine, and a version exported
before the mixture, which ranks new rows by their raw scores."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from encoders.export import ScoringGraph
from encoders.mixture_fit import TEMPERATURES
from encoders.pipeline import export_checkpoint
from serving.artifact import INPUTS, load_artifact, sha256_of
from serving.engine import Engine
from serving.mixture import FALLBACK_TEMPERATURE, NewRowMix


def test_share_rules_and_validation():
    mix = NewRowMix()
    assert mix.share_for(1000, 0) == 0.0  # no new rows: nothing to mix
    assert mix.share_for(1000, 10) == mix.min_share == 0.05  # a handful: the floor
    assert mix.share_for(1000, 300) == pytest.approx(0.3)  # their part of the catalog
    assert NewRowMix(share=0.2).share_for(1000, 1) == 0.2
    np.testing.assert_allclose(NewRowMix(0.2, mass=0.5).feed(100, 3, 2.0), [0.2, 2.0, 0.5])
    chosen = {"text": {"mixture": {"temperature": 1.25}}}
    assert NewRowMix().temperature_for(chosen) == 1.25  # auto: the version's own
    assert NewRowMix(temperature=2.0).temperature_for(chosen) == 2.0  # a setting wins
    assert NewRowMix().temperature_for({"text": None}) == FALLBACK_TEMPERATURE == 1.0
    for bad in ({"share": 1.0}, {"share": -0.1}, {"min_share": 1.0}, {"temperature": 0.0}, {"mass": -1.0}):
        with pytest.raises(ValueError):
            NewRowMix(**bad)


def _new_rows(art, history_row: int, n_weak: int = 40):
    """One strong new row (10x an item the user likes) and weak random ones."""
    rng = np.random.default_rng(3)
    weak = rng.standard_normal((n_weak, art.item_emb.shape[1])) * art.item_emb[2:].std() * 0.5
    rows = np.concatenate([10.0 * art.item_emb[history_row][None], weak]).astype(np.float32)
    return ["strong"] + [f"weak-{n}" for n in range(n_weak)], rows


def test_the_engine_ranks_new_rows_as_a_mixture(trained_items_only):
    art = load_artifact(trained_items_only.version_dir)
    history = list(art.item_ids[2:7])
    engines = {
        "raw": Engine(art, device="cpu", new_rows=None),
        "mixture": Engine(art, device="cpu"),
        "never": Engine(art, device="cpu", new_rows=NewRowMix(share=0.0)),
        "mostly new": Engine(art, device="cpu", new_rows=NewRowMix(share=0.9)),
    }
    before = {name: e.recommend([history], 20)[0] for name, e in engines.items()}
    assert all(lst == before["raw"] for lst in before.values())  # without new rows the mixture changes nothing
    liked = art.item_ids.index(before["raw"][0].item_id)
    ids, rows = _new_rows(art, liked)
    for engine in engines.values():
        assert engine.add_items(ids, rows) == len(ids)
    got = {name: e.recommend([history], 20)[0] for name, e in engines.items()}
    new = set(ids)

    assert got["raw"][0].item_id == "strong"  # its raw score is 10x the user's favourite
    assert not new & {s.item_id for s in got["never"]}  # share 0: new rows are never recommended
    assert got["mostly new"][0].item_id == "strong"  # share 0.9: the user's likeliest new item comes first
    mixed = got["mixture"]
    assert "strong" in [s.item_id for s in mixed]  # the user's best new item competes ...
    # ... trained items keep their raw scores and order; new ones keep their order among themselves
    trained_raw = {s.item_id: s.score for s in got["never"]}
    for s in mixed:
        if s.item_id not in new:
            assert s.score == pytest.approx(trained_raw[s.item_id], abs=1e-4)
    raw_all = {s.item_id: s.score for s in engines["raw"].recommend([history], art.top_k)[0]}
    new_order = [s.item_id for s in mixed if s.item_id in new and s.item_id in raw_all]
    assert new_order == sorted(new_order, key=lambda item: -raw_all[item])


class _GraphBeforeTheMixture(nn.Module):
    """The scoring graph as exported before the mixture: four inputs, no ``item_new`` / ``new_mix``."""

    def __init__(self, graph: ScoringGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, item_seq, item_emb, item_bias, seen_penalty):
        return self.graph(item_seq, item_emb, item_bias, seen_penalty)


def test_a_version_exported_before_the_mixture_ranks_new_rows_by_raw_score(trained_items_only, tmp_path):
    source = trained_items_only.version_dir
    version = tmp_path / source.name
    shutil.copytree(source, version)
    art = load_artifact(version)
    seq = torch.full((2, art.max_len), 0, dtype=torch.int64)
    seq[:, -3:] = torch.tensor([2, 3, 4])
    n_rows = art.item_emb.shape[0]
    bias = torch.zeros(n_rows)
    bias[:2] = float("-inf")
    legacy = _GraphBeforeTheMixture(
        ScoringGraph(trained_items_only.result.model.cpu(), art.top_k, blend=trained_items_only.blend)
    ).eval()
    with torch.no_grad():
        torch.onnx.export(
            legacy,
            (seq, torch.from_numpy(art.item_emb), bias, torch.tensor([float("-inf")])),
            str(version / "model.onnx"),
            input_names=list(INPUTS),
            output_names=["top_scores", "top_ids"],
            dynamic_axes={"item_seq": {0: "batch"}, "item_emb": {0: "n_rows"}, "item_bias": {0: "n_rows"}},
            opset_version=18,
            dynamo=False,
        )
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["inputs"] = list(INPUTS)
    manifest["files"]["model.onnx"] = sha256_of(version / "model.onnx")
    (version / "manifest.json").write_text(json.dumps(manifest))

    old = Engine(load_artifact(version), device="cpu")  # the worker's default mixture: not in this graph
    now = Engine(load_artifact(source), device="cpu", new_rows=None)
    history = list(art.item_ids[2:7])
    liked = art.item_ids.index(now.recommend([history], 1)[0][0].item_id)
    ids, rows = _new_rows(art, liked)
    for engine in (old, now):
        engine.add_items(ids, rows)
    got, want = old.recommend([history], 10)[0], now.recommend([history], 10)[0]
    assert got[0].item_id == "strong"
    assert [s.item_id for s in got] == [s.item_id for s in want]
    np.testing.assert_allclose([s.score for s in got], [s.score for s in want], atol=1e-4)


def test_a_version_with_text_records_the_temperature_chosen_on_validation(trained_text):
    manifest = json.loads((trained_text.version_dir / "manifest.json").read_text())
    fitted = manifest["text"]["mixture"]
    grid = fitted["validation"]["grid"]
    assert [g["temperature"] for g in grid] == list(TEMPERATURES)
    allowed = [g for g in grid if g["other_drop"] < fitted["validation"]["max_drop"]]
    chosen = next(g for g in grid if g["temperature"] == fitted["temperature"])
    if allowed:  # the best gain among the temperatures that cost the other users little
        assert chosen in allowed and chosen["new_ndcg@10"] == max(g["new_ndcg@10"] for g in allowed)
    assert fitted["validation"]["users_with_a_pseudo_new_target"] > 0
    assert Engine(load_artifact(trained_text.version_dir), device="cpu").new_temperature == fitted["temperature"]
    assert (
        Engine(
            load_artifact(trained_text.version_dir), device="cpu", new_rows=NewRowMix(temperature=3.0)
        ).new_temperature
        == 3.0
    )


def test_a_checkpoint_exported_again_keeps_the_chosen_temperature(trained_text, tmp_path):
    again = export_checkpoint(trained_text.checkpoint, tmp_path / "models")  # torch loads it with weights_only
    fitted = json.loads((trained_text.version_dir / "manifest.json").read_text())["text"]["mixture"]
    assert json.loads((again / "manifest.json").read_text())["text"]["mixture"] == fitted

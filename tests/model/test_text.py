"""Item text: real MiniLM embeddings, fusion into the item table, cold-start rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from encoders.split import left_pad
from encoders.text import TextEncoder, default_text_model_path
from serving.artifact import load_artifact, sha256_of
from serving.engine import Engine


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def test_packaged_minilm_gives_meaningful_embeddings(encoder):
    assert default_text_model_path().is_dir()
    v = encoder.encode(
        ["red running shoes", "crimson jogging sneakers", "stainless steel kitchen knife", ""],
        batch_size=2,
        progress=False,
    )
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    again = encoder.encode(["red running shoes"], progress=False)
    np.testing.assert_allclose(again[0], v[0], atol=1e-5)  # batching/padding does not matter


def test_missing_text_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--text-model"):
        TextEncoder(tmp_path / "nope")


def test_text_artifact_files_and_manifest(trained_text):
    vdir = trained_text.version_dir
    m = json.loads((vdir / "manifest.json").read_text(encoding="utf-8"))
    assert m["text"]["dim"] == 384
    assert m["text"]["emb_file"] == "item_text_emb.npy"
    assert m["text"]["proj_file"] == "text_proj.npz"
    assert m["text"]["model"]
    for name in ("item_text_emb.npy", "text_proj.npz"):
        assert m["files"][name] == sha256_of(vdir / name)
    text_emb = np.load(vdir / "item_text_emb.npy")
    assert text_emb.shape == (m["n_items"] + 2, 384) and text_emb.dtype == np.float32
    proj = np.load(vdir / "text_proj.npz")
    assert proj["weight"].shape == (384, m["dim"]) and proj["bias"].shape == (m["dim"],)


def _category_histories(sim_dir, vocab_ids, category):
    """Test-time histories of users whose newest item is in ``category``."""
    cats = {}
    for line in (sim_dir / "items.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        cats[d["item_id"]] = d["category"]
    index = {item: k + 2 for k, item in enumerate(vocab_ids)}
    per_user: dict[str, list[str]] = {}
    for line in (sim_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        per_user.setdefault(e["user_id"], []).append(e["item_id"])
    return [np.array([index[i] for i in seq]) for seq in per_user.values() if cats[seq[-1]] == category]


def test_cold_start_item_row_comes_from_text_and_is_scored(trained_text, sim_dir, cold_items):
    art = load_artifact(trained_text.version_dir)
    vdir = art.path
    text_emb = np.load(vdir / "item_text_emb.npy")
    proj = np.load(vdir / "text_proj.npz")
    from_text = text_emb @ proj["weight"] + proj["bias"]
    ids = {item: k for k, item in enumerate(art.item_ids) if k >= 2}  # index = internal id
    assert {c["item_id"] for c in cold_items} <= set(ids)  # catalog-only items are in the table
    known = ids[art.item_ids[2]]
    for cold in cold_items:
        row = ids[cold["item_id"]]
        assert np.abs(text_emb[row]).sum() > 0
        np.testing.assert_allclose(art.item_emb[row], from_text[row], atol=1e-5)
    assert not np.allclose(art.item_emb[known], from_text[known], atol=1e-3)  # id + text

    engine = Engine(art, device="cpu")  # the graph through the worker's engine (behaviour inputs: "other")
    max_len = art.manifest["max_len"]

    def cold_scores(histories, item_id):
        bias = np.full(len(art.item_emb), -np.inf, dtype=np.float32)
        bias[ids[item_id]] = 0.0  # only the cold item can be ranked: read its score
        scores, top = engine.score(left_pad(histories, max_len), bias)
        assert (top[:, 0] == ids[item_id]).all()
        return scores[:, 0]

    shoes = _category_histories(sim_dir, art.item_ids[2:], "shoes")
    kitchen = _category_histories(sim_dir, art.item_ids[2:], "kitchen")
    assert shoes and kitchen
    s_shoes = cold_scores(shoes, "cold-shoes")
    assert np.isfinite(s_shoes).all() and s_shoes.std() > 0
    # the text says "shoes": the cold item scores higher after shoes than after kitchenware
    assert s_shoes.mean() > cold_scores(kitchen, "cold-shoes").mean()
    assert cold_scores(kitchen, "cold-kitchen").mean() > cold_scores(shoes, "cold-kitchen").mean()

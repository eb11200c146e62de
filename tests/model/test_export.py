"""The exported artifact: layout and manifest per docs/artifact.md, and ONNX/torch parity."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from encoders.export import ScoringGraph, default_bias
from encoders.split import left_pad
from serving.artifact import ArtifactError, load_artifact, sha256_of
from tests.model.tiny import exported_scores, in_blended_order

MANIFEST_KEYS = {
    "format_version",
    "model_version",
    "created_at",
    "model_type",
    "opset",
    "inputs",
    "outputs",
    "max_len",
    "pad_id",
    "unk_id",
    "n_items",
    "dim",
    "top_k",
    "files",
    "text",
    "config",
    "training",
    "metrics",
}


@pytest.fixture(scope="module")
def session(trained):
    return ort.InferenceSession(str(trained.version_dir / "model.onnx"), providers=["CPUExecutionProvider"])


def test_version_folder_and_manifest(trained):
    vdir = trained.version_dir
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", vdir.name)
    assert not [p for p in vdir.parent.iterdir() if p.name.startswith(".tmp-")]
    assert not trained.checkpoint.is_relative_to(vdir.parent)  # checkpoint outside the root
    m = json.loads((vdir / "manifest.json").read_text(encoding="utf-8"))
    assert set(m) >= MANIFEST_KEYS
    assert m["format_version"] == 1 and m["model_version"] == vdir.name
    assert m["opset"] == 18 and m["model_type"] == "sasrec"
    # the simulated events differ in event type: the model reads behaviour, and the manifest names its vocabularies
    assert m["inputs"] == [
        "item_seq",
        "item_emb",
        "item_bias",
        "seen_penalty",
        "item_new",
        "new_mix",
        "type_seq",
        "scenario_seq",
    ]
    assert set(m["behaviour"]["event_types"]) == {"view", "click", "add_to_cart", "purchase"}
    assert m["behaviour"]["scenarios"] == [""]  # the events name no scenario
    assert m["outputs"] == ["top_scores", "top_ids"]
    assert (m["pad_id"], m["unk_id"], m["max_len"], m["dim"], m["top_k"]) == (0, 1, 20, 32, 20)
    assert vdir.name.endswith(sha256_of(vdir / "model.onnx")[:6])
    on_disk = {p.name for p in vdir.iterdir()} - {"manifest.json"}
    assert set(m["files"]) == on_disk == {"model.onnx", "item_emb.npy", "items.tsv"}
    for name, digest in m["files"].items():
        assert sha256_of(vdir / name) == digest
    assert m["text"] is None
    assert set(m["metrics"]) >= {"split", "sasrec", "popularity", "cooccurrence"}
    assert m["training"]["n_items"] == m["n_items"] and m["training"]["device"] == "cpu"


def test_items_tsv_and_item_emb(trained):
    vdir = trained.version_dir
    m = json.loads((vdir / "manifest.json").read_text(encoding="utf-8"))
    lines = (vdir / "items.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "internal_id\titem_id\ttitle"
    assert len(lines) == m["n_items"] + 1
    assert [int(line.split("\t")[0]) for line in lines[1:]] == list(range(2, m["n_items"] + 2))
    emb = np.load(vdir / "item_emb.npy")
    assert emb.dtype == np.float32 and emb.shape == (m["n_items"] + 2, m["dim"])
    assert not emb[0].any() and np.abs(emb[2:]).sum() > 0
    art = load_artifact(vdir)  # re-checks hashes and shapes
    assert art.item_ids[2] == lines[1].split("\t")[1]  # index = internal id; 0 and 1 are pad and unknown


def test_tampered_file_is_refused(trained, tmp_path):
    import shutil

    copy = tmp_path / trained.version_dir.name
    shutil.copytree(trained.version_dir, copy)
    (copy / "items.tsv").write_text("internal_id\titem_id\ttitle\n", encoding="utf-8")
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(copy)


def test_onnx_graph_signature(trained):
    g = onnx.load(str(trained.version_dir / "model.onnx"))
    onnx.checker.check_model(g)
    dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(g.graph.input) + list(g.graph.output)
    }
    assert dims == {
        "item_seq": ["batch", "length"],
        "item_emb": ["n_rows", 32],
        "item_bias": ["n_rows"],
        "seen_penalty": [1],
        "item_new": ["n_rows"],
        "new_mix": [3],
        "type_seq": ["batch", "length"],
        "scenario_seq": ["batch", "length"],
        "top_k": [1],
        "top_scores": ["batch", "k"],
        "top_ids": ["batch", "k"],
    }
    # top_k is also an initializer (the export's 20): a call may leave it out
    assert [onnx.numpy_helper.to_array(i).tolist() for i in g.graph.initializer if i.name == "top_k"] == [[20]]
    n_rows = json.loads((trained.version_dir / "manifest.json").read_text())["n_items"] + 2
    item_emb = load_artifact(trained.version_dir).item_emb
    for init in g.graph.initializer:  # the item table is a runtime input, not a weight
        if tuple(init.dims) == item_emb.shape:
            assert not np.allclose(onnx.numpy_helper.to_array(init), item_emb), init.name
    # the only constants the size of the catalog: the co-occurrence followers blended in (encoders.blend)
    per_row = [i for i in g.graph.initializer if list(i.dims[:1]) == [n_rows]]
    assert len(per_row) == (2 if trained.blend is not None else 0)
    assert {o.domain or "ai.onnx" for o in g.opset_import} >= {"ai.onnx"}
    assert [o.version for o in g.opset_import if o.domain in ("", "ai.onnx")] == [18]


def _fixed_batch(trained, n_rows):
    split_hist = [np.arange(2, 2 + k) % n_rows for k in (1, 5, 19, 25)]
    rng = np.random.default_rng(0)
    split_hist += [rng.integers(2, n_rows, size=n) for n in (3, 12, 20, 40)]
    split_hist.append(np.array([1, 1, 5]))  # unknown items in the history
    return left_pad(split_hist, 20)


def _no_new_rows(n_rows):
    """``item_new`` and ``new_mix`` of a catalog without rows added while serving."""
    return {"item_new": np.zeros(n_rows, np.float32), "new_mix": np.array([0.1, 1.0, 0.01], np.float32)}


def _behaviour(seq, seed=0):
    """Random event-type and scenario ids (other, or one of the model's) beside the padded sequences."""
    rng = np.random.default_rng(seed)
    nonpad = seq != 0
    return {
        "type_seq": np.where(nonpad, rng.integers(1, 6, size=seq.shape), 0),
        "scenario_seq": np.where(nonpad, rng.integers(1, 3, size=seq.shape), 0),
    }


def test_a_call_asks_for_its_list_length(trained, session):
    """The graph returns the ``top_k`` a call feeds (capped at the export's), the head of the full list."""
    art = load_artifact(trained.version_dir)
    n_rows = art.item_emb.shape[0]
    seq = _fixed_batch(trained, n_rows)
    feeds = {
        "item_seq": seq,
        "item_emb": art.item_emb,
        "item_bias": default_bias(n_rows),
        "seen_penalty": np.array([float("-inf")], dtype=np.float32),
        **_no_new_rows(n_rows),
        **_behaviour(seq),
    }
    full_scores, full_ids = session.run(None, feeds)
    assert full_ids.shape == (len(seq), 20)
    for k, columns in ((1, 1), (7, 7), (20, 20), (500, 20)):
        scores, ids = session.run(None, {**feeds, "top_k": np.array([k], np.int64)})
        assert ids.shape == scores.shape == (len(seq), columns)
        np.testing.assert_array_equal(ids, full_ids[:, :columns])
        np.testing.assert_array_equal(scores, full_scores[:, :columns])


def test_a_call_may_drop_leading_padding(trained, session):
    """Sequences of any length up to max_len: columns that are padding in every row change no score."""
    art = load_artifact(trained.version_dir)
    n_rows = art.item_emb.shape[0]
    seq = _fixed_batch(trained, n_rows)
    fixed = {
        "item_emb": art.item_emb,
        "item_bias": default_bias(n_rows),
        "seen_penalty": np.array([float("-inf")], dtype=np.float32),
        **_no_new_rows(n_rows),
    }
    steps = _behaviour(seq)
    full_scores, full_ids = session.run(None, {"item_seq": seq, **fixed, **steps})
    lengths = (seq != 0).sum(axis=1)
    for width in (1, 3, 5, 12, 19):
        rows = np.flatnonzero(lengths <= width)
        assert len(rows), width
        crop = {name: np.ascontiguousarray(value[rows, -width:]) for name, value in {"item_seq": seq, **steps}.items()}
        scores, ids = session.run(None, {**crop, **fixed})
        np.testing.assert_array_equal(ids, full_ids[rows])
        np.testing.assert_allclose(scores, full_scores[rows], atol=1e-5, rtol=0)


@pytest.mark.parametrize("penalty", [float("-inf"), 0.0])
def test_onnxruntime_matches_torch(trained, session, penalty):
    art = load_artifact(trained.version_dir)
    n_rows = art.item_emb.shape[0]
    seq = _fixed_batch(trained, n_rows)
    feeds = {
        "item_seq": seq,
        "item_emb": art.item_emb,
        "item_bias": default_bias(n_rows),
        "seen_penalty": np.array([penalty], dtype=np.float32),
        **_no_new_rows(n_rows),
        **_behaviour(seq),
    }
    top_scores, top_ids = session.run(None, feeds)
    graph = ScoringGraph(trained.result.model.cpu(), top_k=20, blend=trained.blend)
    with torch.no_grad():
        ref_scores, ref_ids = graph(*(torch.from_numpy(v) for v in feeds.values()))
    np.testing.assert_array_equal(top_ids, ref_ids.numpy())
    np.testing.assert_allclose(top_scores, ref_scores.numpy(), atol=1e-4, rtol=0)
    assert top_ids.dtype == np.int64 and (np.diff(top_scores, axis=1) <= 0).all()
    assert (top_ids >= 2).all()  # pad and unknown never recommended
    # plain torch model scores agree as well (no masking there, so compare the top item's score)
    steps = torch.from_numpy(np.stack([feeds["type_seq"], feeds["scenario_seq"]], axis=-1))
    full = exported_scores(trained, torch.from_numpy(seq), steps, exclude_seen=False)
    rows = np.arange(len(seq))
    if penalty == 0.0:
        np.testing.assert_allclose(top_scores[:, 0], full[rows, top_ids[:, 0]], atol=1e-4)


def test_seen_items_are_masked_and_catalog_can_grow(trained, session):
    art = load_artifact(trained.version_dir)
    n_rows, dim = art.item_emb.shape
    seq = _fixed_batch(trained, n_rows)
    base = {
        "item_seq": seq,
        "item_emb": art.item_emb,
        "item_bias": default_bias(n_rows),
        **_no_new_rows(n_rows),
        **_behaviour(seq),
    }
    _, masked = session.run(None, {**base, "seen_penalty": np.array([-np.inf], np.float32)})
    _, kept = session.run(None, {**base, "seen_penalty": np.array([0.0], np.float32)})
    for row in range(len(seq)):
        assert not set(masked[row]) & set(seq[row].tolist())
    assert any(set(kept[row]) & set(seq[row].tolist()) for row in range(len(seq)))

    # A new item appended at run time, aligned with the user state, wins without re-export.
    with torch.no_grad():
        steps = torch.from_numpy(np.stack([base["type_seq"], base["scenario_seq"]], axis=-1))
        h = trained.result.model.encode(torch.from_numpy(seq), torch.from_numpy(art.item_emb), behaviour=steps)
    new_row = 10.0 * h[0, -1].numpy()[None, :]
    grown = np.concatenate([art.item_emb, new_row]).astype(np.float32)
    _, ids = session.run(
        None,
        {
            "item_seq": seq,
            "item_emb": grown,
            "item_bias": default_bias(n_rows + 1),
            "seen_penalty": np.array([-np.inf], np.float32),
            "item_new": np.zeros(n_rows + 1, np.float32),  # ranked by its raw score, as a trained row
            "new_mix": np.array([0.1, 1.0, 0.01], np.float32),
            **_behaviour(seq),
        },
    )
    assert ids[0, 0] == n_rows  # the new row's id

    bias = default_bias(n_rows)
    bias[masked[0, 0]] = -np.inf  # unavailable item
    _, ids = session.run(None, {**base, "item_bias": bias, "seen_penalty": np.array([-np.inf], np.float32)})
    assert masked[0, 0] not in ids[0]


def _mixture_reference(scores, is_new, share, temperature, mass):
    """Log-probabilities of ``(1 - share) P_trained + share P_new``, ``P_new`` over the new rows / temperature and
    a pseudo-row of logit ``log(mass * sum exp(trained))``, divided by the temperature too."""
    out = np.full(scores.shape, -np.inf)
    for row, s in enumerate(scores.astype(np.float64)):
        trained = np.exp(s[~is_new]).sum()
        z = s[is_new] / temperature
        out[row, ~is_new] = np.log(1.0 - share) + s[~is_new] - np.log(trained)
        none = np.exp(np.log(mass * trained) / temperature) if mass else 0.0  # a pseudo-row, scaled alike
        out[row, is_new] = np.log(share) + z - np.log(np.exp(z).sum() + none)
    return out


@pytest.mark.parametrize(("share", "temperature", "mass"), [(0.3, 1.0, 0.0), (0.05, 2.5, 0.01), (0.2, 1.5, 0.5)])
def test_new_rows_are_ranked_as_a_mixture(trained, session, share, temperature, mass):
    art = load_artifact(trained.version_dir)
    n_rows, dim = art.item_emb.shape
    seq = _fixed_batch(trained, n_rows)
    behaviour = _behaviour(seq)
    rng = np.random.default_rng(1)
    new = (rng.standard_normal((12, dim)) * art.item_emb[2:].std()).astype(np.float32)
    grown = np.concatenate([art.item_emb, new])
    is_new = np.arange(len(grown)) >= n_rows
    bias = default_bias(len(grown))
    bias[n_rows + 3] = -np.inf  # a new item made unavailable
    feeds = {
        "item_seq": seq,
        "item_emb": grown,
        "item_bias": bias,
        "seen_penalty": np.array([-np.inf], np.float32),
        "item_new": is_new.astype(np.float32),
        "new_mix": np.array([share, temperature, mass], np.float32),
        **behaviour,
    }
    top_scores, top_ids = session.run(None, feeds)

    with torch.no_grad():
        steps = torch.from_numpy(np.stack([behaviour["type_seq"], behaviour["scenario_seq"]], axis=-1))
        h = trained.result.model.encode(torch.from_numpy(seq), torch.from_numpy(grown), behaviour=steps)[:, -1]
    raw = h.numpy() @ grown.T + bias
    for row, items in enumerate(seq):
        raw[row, items] = -np.inf  # seen
    want = _mixture_reference(raw, is_new, share, temperature, mass)
    if trained.blend is not None:  # co-occurrence orders the trained rows; they take the model's own values
        with torch.no_grad():
            term = trained.blend.module(seq.shape[1])(torch.from_numpy(seq), torch.from_numpy(raw)).numpy()
        assert not term[:, is_new].any() and term.any()
        want, raw = in_blended_order(want, raw + term, is_new), in_blended_order(raw, raw + term, is_new)
    want_ids = np.argsort(-want, axis=1, kind="stable")[:, : top_ids.shape[1]]
    np.testing.assert_array_equal(top_ids, want_ids)
    assert is_new[top_ids].any()  # the new rows compete: some reach a list
    assert n_rows + 3 not in top_ids
    _, shifted = session.run(None, {**feeds, "item_bias": bias + np.float32(5.0)})  # every score + 5
    np.testing.assert_array_equal(shifted, top_ids)
    # trained rows keep their raw scores; each row's mixture differs from the scores by one constant per user
    shift = top_scores - np.take_along_axis(want, top_ids, axis=1)
    np.testing.assert_allclose(shift, shift[:, :1].repeat(shift.shape[1], axis=1), atol=1e-3)
    trained_pos = ~is_new[top_ids]
    np.testing.assert_allclose(
        top_scores[trained_pos], np.take_along_axis(raw, top_ids, axis=1)[trained_pos], atol=1e-4
    )


def test_new_rows_share_zero_and_all_unavailable(trained, session):
    art = load_artifact(trained.version_dir)
    n_rows, dim = art.item_emb.shape
    seq = _fixed_batch(trained, n_rows)
    grown = np.concatenate([art.item_emb, 10.0 * art.item_emb[2:6]])  # strong rows that would win
    is_new = (np.arange(len(grown)) >= n_rows).astype(np.float32)
    feeds = {
        "item_seq": seq,
        "item_emb": grown,
        "item_bias": default_bias(len(grown)),
        "seen_penalty": np.array([-np.inf], np.float32),
        "item_new": is_new,
        **_behaviour(seq),
    }
    scores, ids = session.run(None, {**feeds, "new_mix": np.array([0.0, 1.0, 0.01], np.float32)})
    assert (ids < n_rows).all() and np.isfinite(scores).all()  # share 0: new rows never recommended
    unavailable = default_bias(len(grown))
    unavailable[n_rows:] = -np.inf
    feeds["item_bias"] = unavailable
    scores, ids = session.run(None, {**feeds, "new_mix": np.array([0.5, 1.0, 0.0], np.float32)})
    assert (ids < n_rows).all() and not np.isnan(scores).any()


def test_new_rows_alone_rank_by_their_own_scores(trained, session):
    """With every trained row excluded (a list of new items only) the mixture keeps the new rows' order."""
    art = load_artifact(trained.version_dir)
    n_rows, dim = art.item_emb.shape
    seq = _fixed_batch(trained, n_rows)
    rng = np.random.default_rng(2)
    grown = np.concatenate([art.item_emb, rng.standard_normal((25, dim)).astype(np.float32)])
    bias = np.full(len(grown), -np.inf, np.float32)
    bias[n_rows:] = 0.0
    feeds = {
        "item_seq": seq,
        "item_emb": grown,
        "item_bias": bias,
        "seen_penalty": np.array([-np.inf], np.float32),
        "item_new": (np.arange(len(grown)) >= n_rows).astype(np.float32),
        **_behaviour(seq),
    }
    _, mixed = session.run(None, {**feeds, "new_mix": np.array([0.2, 1.5, 0.01], np.float32)})
    _, raw = session.run(
        None, {**feeds, "item_new": np.zeros(len(grown), np.float32), "new_mix": np.array([0.2, 1.0, 0.0], np.float32)}
    )
    np.testing.assert_array_equal(mixed, raw)
    assert (mixed >= n_rows).all()

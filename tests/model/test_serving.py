"""serving: artifact validation, the onnxruntime engine and the hot-swap registry, on a really trained model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from serving.artifact import ArtifactError, list_versions, load_artifact, resolve_version, sha256_of
from serving.engine import Engine, cuda_available
from serving.registry import REJECTED, SWAPPED, UNCHANGED, ModelRegistry, engine_loader


@pytest.fixture()
def version(model_root, tmp_path) -> Path:
    """A private copy of the trained version, free to break."""
    source = resolve_version(model_root)
    copy = tmp_path / source.name
    shutil.copytree(source, copy)
    return copy


def rewrite_manifest(path: Path, **changes) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def refresh_hash(path: Path, name: str) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][name] = sha256_of(path / name)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_trained_version_loads(version):
    artifact = load_artifact(version)
    assert artifact.version == version.name
    assert artifact.item_emb.shape == (len(artifact.item_ids), artifact.manifest["dim"])
    assert artifact.item_ids[:2] == ("", "")


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda p: (p / "manifest.json").unlink(), "not a model version folder"),
        (lambda p: (p / "manifest.json").write_text("{oops"), "not valid JSON"),
        (lambda p: rewrite_manifest(p, format_version=2), "format_version 2"),
        (lambda p: _drop(p, "top_k"), "lacks top_k"),
        (lambda p: (p / "model.onnx").write_bytes(b"garbage"), "corrupt"),
        (lambda p: (p / "items.tsv").unlink(), "missing"),
        (lambda p: _truncate_items(p), "items, the manifest says"),
        (lambda p: _wrong_embedding(p), "expected float32"),
    ],
)
def test_broken_versions_are_refused_with_a_sentence(version, breakage, message):
    breakage(version)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(version)


def _drop(path: Path, field: str) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest[field]
    (path / "manifest.json").write_text(json.dumps(manifest))


def _truncate_items(path: Path) -> None:
    lines = (path / "items.tsv").read_text().splitlines()
    (path / "items.tsv").write_text("\n".join(lines[:-1]) + "\n")
    refresh_hash(path, "items.tsv")


def _wrong_embedding(path: Path) -> None:
    emb = np.load(path / "item_emb.npy")
    np.save(path / "item_emb.npy", emb[:, :-1].astype(np.float64))
    refresh_hash(path, "item_emb.npy")


def test_resolve_version_picks_the_newest_and_skips_temporary_folders(version, tmp_path):
    newer = tmp_path / "99990101T000000Z-ffffff"
    shutil.copytree(version, newer)
    shutil.copytree(version, tmp_path / ".tmp-99999999T000000Z-000000")
    assert list_versions(tmp_path) == [version, newer]
    assert resolve_version(tmp_path) == newer
    assert resolve_version(version) == version
    with pytest.raises(ArtifactError, match="streamrec train"):
        resolve_version(tmp_path / "empty")


def test_engine_recommends_distinct_unseen_items_in_score_order(version):
    engine = Engine(load_artifact(version), device="cpu", max_batch=4)
    catalog = list(engine.vocab)
    histories = [catalog[:5], catalog[10:12], [], ["never-seen-item", catalog[3]], catalog[20:70]]
    results = engine.recommend(histories, 10)
    assert len(results) == len(histories)
    for history, recs in zip(histories, results):
        ids = [r.item_id for r in recs]
        assert len(ids) == 10 and len(set(ids)) == 10
        assert not set(ids) & set(history)
        assert "never-seen-item" not in ids
        scores = [r.score for r in recs]
        assert scores == sorted(scores, reverse=True)
        assert all(r.because in history for r in recs if r.because is not None)
    assert all(r.because is None for r in results[2])  # nothing to explain with an empty history
    # batches above max_batch are split, with the same answers as one by one
    assert results[4] == engine.recommend([histories[4]], 10)[0]


def test_items_added_while_serving_are_recommended_and_the_matrix_grows_past_its_capacity(trained_items_only):
    engine = Engine(load_artifact(trained_items_only.version_dir), device="cpu", max_batch=8)
    catalog = list(engine.vocab)
    history = catalog[:6]
    before_rows = engine.rows
    top = engine.recommend([history], 1)[0][0]
    # a new item whose row is the user's state direction scaled up: it must top the list
    model = trained_items_only.result.model.cpu().eval()
    with torch.no_grad():
        state = model.encode(torch.from_numpy(engine.encode([history])), torch.from_numpy(engine.rows.emb))[0, -1]
    strong = (state / state.norm() * 10 * np.abs(engine.rows.emb).max() * engine.rows.emb.shape[1] ** 0.5).numpy()
    spare = engine.capacity - len(engine.rows)
    filler = np.random.default_rng(0).normal(0, 1e-3, (spare + 5, engine.rows.emb.shape[1])).astype(np.float32)
    ids = ["new-strong"] + [f"new-{n}" for n in range(spare + 5)]
    assert engine.add_items(ids, np.vstack([strong[None, :], filler])) == len(ids)
    assert engine.capacity > len(engine.rows) == len(before_rows) + len(ids)  # grown, not crashed
    assert engine.recommend([history], 1)[0][0].item_id == "new-strong"
    assert engine.add_items(["new-strong", catalog[0]], np.zeros((2, strong.shape[0]), np.float32)) == 0  # known
    # a snapshot taken before is unchanged (a batch in flight keeps its view)
    assert len(before_rows.names) == len(before_rows.emb) == len(before_rows.item_bias) == engine.trained_rows
    # a new item is an ordinary history item too (its row, not the unknown row)
    assert engine.encode([["new-strong"]])[0, -1] == engine.vocab["new-strong"] >= engine.trained_rows

    # and a bias function sees the rows of the call: excluding the new row gives back the old top item
    def no_new(rows):
        bias = rows.item_bias.copy()
        bias[rows.vocab["new-strong"]] = -np.inf
        return bias

    assert engine.recommend([history], 1, no_new)[0][0].item_id == top.item_id


def test_unknown_items_are_encoded_as_unknown_and_left_padded(version):
    engine = Engine(load_artifact(version), device="cpu")
    first = next(iter(engine.vocab))
    seq = engine.encode([[first, "nope"], [first]])
    assert engine.crops and seq.shape == (2, 2)  # as wide as the longest history
    assert seq.tolist() == [[engine.vocab[first], 1], [0, engine.vocab[first]]]
    engine.crops = False  # a version exported before the graph took any length
    seq = engine.encode([[first, "nope"]])
    assert seq.shape == (1, engine.max_len)
    assert seq[0, -2:].tolist() == [engine.vocab[first], 1]
    assert not seq[0, :-2].any()
    assert engine.encode([list(engine.vocab)[: engine.max_len + 5]]).shape == (1, engine.max_len)


def test_short_batches_rank_as_full_width_ones(version):
    """A batch as wide as its longest history gives the lists of a max_len-wide one."""
    cropping = Engine(load_artifact(version), device="cpu", max_batch=4)
    full = Engine(load_artifact(version), device="cpu", max_batch=4)
    full.crops = False
    catalog = list(cropping.vocab)
    histories = [catalog[:1], catalog[10:13], [], catalog[5:9], catalog[20:22], catalog[30:100]]
    assert cropping.encode(histories[:4]).shape[1] == 4
    got, want = cropping.recommend(histories, 10), full.recommend(histories, 10)
    assert [[r.item_id for r in recs] for recs in got] == [[r.item_id for r in recs] for recs in want]
    for recs, ref in zip(got, want, strict=True):
        np.testing.assert_allclose([r.score for r in recs], [r.score for r in ref], atol=1e-5)
    # a batch of many short histories and two long ones is scored in calls by length, each list in its place
    mixed = [catalog[i : i + 1 + i % 3] for i in range(30)] + [catalog[40:100], catalog[100:160]]
    mixed.insert(7, mixed.pop())
    cropping = Engine(load_artifact(version), device="cpu", max_batch=len(mixed))
    full = Engine(load_artifact(version), device="cpu", max_batch=len(mixed))
    full.crops = False
    assert len(cropping._groups(mixed)) >= 2 and len(full._groups(mixed)) == 1
    got, want = cropping.recommend(mixed, 10), full.recommend(mixed, 10)
    assert [[r.item_id for r in recs] for recs in got] == [[r.item_id for r in recs] for recs in want]
    assert [[r.because for r in recs] for recs in got] == [[r.because for r in recs] for recs in want]


def test_seen_items_come_back_when_exclusion_is_off(version):
    artifact = load_artifact(version)
    history = list(artifact.item_ids[2:40])
    on = Engine(artifact, device="cpu", exclude_seen=True).recommend([history], 20)[0]
    off = Engine(artifact, device="cpu", exclude_seen=False).recommend([history], 20)[0]
    assert not {r.item_id for r in on} & set(history)
    assert {r.item_id for r in off} & set(history)


def test_k_above_the_graph_top_k_is_refused(version):
    engine = Engine(load_artifact(version), device="cpu")
    with pytest.raises(ValueError, match="top_k"):
        engine.recommend([[]], engine.artifact.top_k + 1)


def test_asking_for_cuda_without_it_fails_at_start(version):
    if cuda_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ArtifactError, match="STREAMREC_DEVICE"):
        Engine(load_artifact(version), device="cuda")


@pytest.mark.gpu
def test_cuda_engine_matches_cpu(version):
    if not cuda_available():
        pytest.skip("the CUDA execution provider is not usable here")
    artifact = load_artifact(version)
    histories = [list(artifact.item_ids[2 + i : 12 + i]) for i in range(64)]
    gpu = Engine(artifact, device="cuda", max_batch=64)
    assert gpu.device == "cuda"
    cpu = Engine(artifact, device="cpu", max_batch=64)
    for a, b in zip(gpu.recommend(histories, 10), cpu.recommend(histories, 10)):
        assert [r.item_id for r in a] == [r.item_id for r in b]
        assert np.allclose([r.score for r in a], [r.score for r in b], atol=1e-4)


def test_registry_swaps_to_a_newer_version_and_refuses_a_broken_one(version, tmp_path):
    registry = ModelRegistry(tmp_path, engine_loader("cpu", 8, 0, True))
    assert registry.current.version == version.name and registry.follows_root
    assert registry.poll() == UNCHANGED
    broken = tmp_path / "99990101T000000Z-bad000"
    shutil.copytree(version, broken)
    (broken / "model.onnx").write_bytes(b"not a model")
    assert registry.poll() == REJECTED
    assert registry.current.version == version.name  # the old one keeps serving
    assert registry.poll() == UNCHANGED  # a refused version is not retried every poll
    newer = tmp_path / "99990102T000000Z-good00"
    shutil.copytree(version, newer)
    rewrite_manifest(newer, model_version=newer.name)
    assert registry.poll() == SWAPPED
    assert registry.current.version == newer.name
    assert registry.current.recommend([[]], 3)


def test_a_pinned_version_never_swaps(version, tmp_path):
    registry = ModelRegistry(version, engine_loader("cpu", 8, 0, True))
    shutil.copytree(version, tmp_path / "99990102T000000Z-good00")
    assert not registry.follows_root and registry.poll() == UNCHANGED


def test_a_version_with_shorter_lists_than_top_k_is_refused_with_what_to_do(version):
    top_k = load_artifact(version).top_k
    with pytest.raises(ArtifactError, match=f"returns {top_k} items per list and STREAMREC_TOP_K is {top_k + 1}"):
        ModelRegistry(version, engine_loader("cpu", 8, 0, True, top_k + 1))
    assert ModelRegistry(version, engine_loader("cpu", 8, 0, True, top_k)).current.version == version.name

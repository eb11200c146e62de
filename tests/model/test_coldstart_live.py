"""Cold start through the worker's path (``evaluate --cold-start --live-path``) and the calibration of new rows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from encoders.cli import main
from serving.artifact import ArtifactError, load_artifact
from serving.engine import Engine
from serving.text_rows import DEFAULT_CALIBRATION, Calibration, NeighbourImputer, TextRows, item_text


def test_imputer_averages_the_id_parts_of_the_text_neighbours():
    weight = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], np.float32)  # [text_dim 3, dim 2]
    bias = np.array([0.1, -0.1], np.float32)
    text = np.array(
        [[0, 0, 0], [0, 0, 0], [1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32
    )  # pad, unknown, a, b (close to a), c, d (catalog-only: no id part), e (no text)
    ids = np.array([[0, 0], [0, 0], [1, 0], [2, 0], [0, 3], [0, 0], [5, 5]], np.float32)
    emb = ids + text @ weight + bias
    emb[0] = 0.0
    near = NeighbourImputer.from_table(emb, text, weight, bias, Calibration(neighbours=1, temperature=0.05))
    assert near is not None and len(near) == 3  # a, b, c: d has no id part, e no text
    np.testing.assert_allclose(near.id_part(np.array([[1, 0, 0], [0, 0, 0]], np.float32)), [[1, 0], [0, 0]], atol=1e-5)
    two = NeighbourImputer.from_table(emb, text, weight, bias, Calibration(2, temperature=1e3, scale=2.0))
    np.testing.assert_allclose(two.id_part(np.array([[1, 0, 0]], np.float32)), [[3.0, 0.0]], atol=1e-2)  # 2 * (1+2)/2
    only_c = NeighbourImputer.from_table(emb, text, weight, bias, Calibration(5), rows=np.array([4, 5]))
    np.testing.assert_allclose(only_c.id_part(np.array([[1, 0, 0]], np.float32)), [[0, 3]], atol=1e-5)
    assert NeighbourImputer.from_table(emb, text, weight, bias, Calibration(), rows=np.array([5, 6])) is None
    with pytest.raises(ValueError):
        Calibration(neighbours=0)


def test_calibration_lifts_a_new_item_for_the_fans_of_its_text_neighbours(trained_text, tmp_path):
    """A new item whose history-mates are its text neighbours ranks higher with neighbour imputation than with the
    plain projection (the worker's default)."""
    version = tmp_path / trained_text.version_dir.name
    shutil.copytree(trained_text.version_dir, version)
    art = load_artifact(version)
    plain, calibrated = TextRows.load(art), TextRows.load(art, calibration=Calibration())  # default: plain
    assert plain is not None and calibrated is not None and calibrated.imputer is not None
    texts = [item_text("blue trail sneakers", "shoes", "blue trail sneakers, a sneakers from our shoes range")]
    np.testing.assert_allclose(plain.rows(texts), calibrated.projection(texts), atol=1e-6)  # parity path kept
    # the new item's nearest trained items by text: the user's history
    table = np.load(version / art.manifest["text"]["emb_file"])
    unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    sims = unit @ calibrated.text_emb(texts)[0]
    trained = np.linalg.norm(art.item_emb - (table @ plain.weight + plain.bias), axis=1) > 1e-3
    trained[:2] = False
    order = np.argsort(-np.where(trained, sims, -np.inf))
    lifted = 0
    for n in (1, 3):  # the nearest item, the 3 nearest
        history = [art.item_ids[i] for i in order[:n]]
        found = {}
        for name, encoder in (("plain", plain), ("calibrated", calibrated)):
            engine = Engine(art, device="cpu", new_rows=None)  # the rows' own scores, not the mixture's
            assert engine.add_items(["new-sneakers"], encoder.rows(texts)) == 1
            ranked = engine.recommend([history], art.top_k)[0]
            at = [s.item_id for s in ranked].index("new-sneakers")  # in the top 20 either way
            found[name] = (at, ranked[at].score)
        print(f"\nhistory of {n}: (rank, score) of the new item {found}")
        assert found["calibrated"][1] > found["plain"][1] + 0.3 and found["calibrated"][0] <= found["plain"][0]
        lifted += found["calibrated"][0] < found["plain"][0]
    assert lifted >= 1  # strictly higher at least once; never lower (above)


def test_the_manifest_may_name_the_calibration(trained_text, tmp_path):
    version = tmp_path / trained_text.version_dir.name
    shutil.copytree(trained_text.version_dir, version)
    default = TextRows.load(load_artifact(version))  # no text.calibration: DEFAULT_CALIBRATION, the plain projection
    assert DEFAULT_CALIBRATION is None and default.calibration is None and default.imputer is None
    for value, expected in (
        ({"neighbours": 3, "temperature": 0.1, "scale": 0.5, "row_scale": 0.75}, Calibration(3, 0.1, 0.5, 0.75)),
        (None, None),
    ):
        manifest = json.loads((version / "manifest.json").read_text())
        manifest["text"]["calibration"] = value
        (version / "manifest.json").write_text(json.dumps(manifest))
        rows = TextRows.load(load_artifact(version))
        assert rows.calibration == expected and (rows.imputer is None) == (expected is None)
    manifest["text"]["calibration"] = {"neighbours": 0}
    (version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="text.calibration"):
        TextRows.load(load_artifact(version))


def test_live_path_cold_start_end_to_end(sim_dir, tmp_path, capsys):
    """Train on the warm rows, publish, load as the worker, add the cold items from their text, rank through the
    engine: the report has every number, among the new items the model beats chance."""
    out = tmp_path / "live.json"
    models = tmp_path / "models"
    args = ["evaluate", "--cold-start", "--live-path", "--live-models", str(models), "--json", str(out)]
    args += ["--events", str(sim_dir / "events.jsonl"), "--items", str(sim_dir / "items.jsonl")]
    args += ["--cold-protocol", "random", "--cold-holdout", "0.25", "--max-len", "20", "--dim", "32"]
    args += ["--layers", "1", "--dropout", "0.1", "--lr", "3e-3", "--batch-size", "32", "--epochs", "15"]
    args += ["--patience", "4", "--seed", "1", "--device", "cpu", "--threads", "2", "--no-progress"]
    events = ["--events", str(sim_dir / "events.jsonl"), "--items", str(sim_dir / "items.jsonl")]
    assert main(["evaluate", "--cold-start", "--live-path", "--cold-rows", "catalog", *events]) == 2
    assert main(["evaluate", "--cold-start", "--live-models", str(models), *events]) == 2
    assert "drop --cold-rows catalog" in capsys.readouterr().err
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "worker's path" in printed and "among the 26 new items only" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["split"]["new_items_added"] == 26  # 24 held out + the 2 catalog-only items of the fixture
    assert (models / report["worker_path"]["version"] / "text_encoder.onnx").is_file()
    assert report["worker_path"]["rows_parity_max_abs"] < 1e-4
    choice = report["training"]["blend"]  # chosen on validation and published, as train does
    assert choice["weight"] >= 0 and len(choice["valid_ndcg10"]) > 1
    manifest = json.loads((models / report["worker_path"]["version"] / "manifest.json").read_text())
    assert (manifest["blend"] is not None) == (choice["weight"] > 0)
    assert "co-occurrence blend:" in printed
    m = report["metrics"]
    variants = [k for k in m["cold_full"] if k.startswith("sasrec_")]
    assert {"sasrec_plain", "sasrec_imputed"} <= set(variants)
    for table in ("cold_full", "cold_among_new"):
        for name in (*variants, "text_similarity", "popularity"):
            assert set(m[table][name]) == {"ndcg@10", "recall@10"}
            assert 0.0 <= m[table][name]["ndcg@10"] <= m[table][name]["recall@10"] <= 1.0
    chance = m["cold_among_new"]["random_expected"]["ndcg@10"]
    assert m["cold_among_new"]["sasrec_plain"]["ndcg@10"] > chance + 0.1
    assert m["cold_full"]["popularity"]["recall@10"] == 0.0  # no interactions: never in a list
    assert {"sasrec_without_new_rows", *variants} <= set(m["warm"])
    assert m["warm"]["sasrec_without_new_rows"]["ndcg@10"] > 0.2
    assert set(m["warm_ndcg_drop_relative"]) == {v.removeprefix("sasrec_") for v in variants}
    v = report["validation"]
    assert v["pseudo_cold_users"] > 0 and len(v["grid"]) > 10

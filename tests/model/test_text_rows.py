"""The artifact's ONNX text encoder: the worker's rows of new items equal training's text-only rows."""

from __future__ import annotations

import json
import time

import numpy as np
import onnxruntime as ort
import pytest
import torch

from encoders.config import ModelConfig
from encoders.export import write_artifact
from encoders.pipeline import TextOptions, text_embeddings
from encoders.text import TextEncoder, export_text_encoder
from encoders.train import build_model, seed_everything
from encoders.vocab import Vocabulary
from serving.artifact import load_artifact, sha256_of
from serving.text_rows import Calibration, TextRows, item_text

CATALOG = [
    ("i1", "red trail sneakers", "shoes", "light sneakers for muddy trails"),
    ("i2", "copper kettle", "kitchen", ""),
    ("i3", "", None, ""),  # no text at all: a zero text embedding
    ("i4", "Ünïcödé lamp ✨", "home", "warm light, 日本語の説明"),
]

TEXTS = [
    "red running shoes",
    "Copper Kettle. kitchen",
    "x",
    "",
    " ",
    "a",
    "USB-C cable, 2 m (braided)",
    "Café crème brûlée set — 4 ramekins",
    "日本語のタイトル",
    "Ünïcödé ✨ emoji 🎧 headphones",
    "tab\tand\nnewline",
    "12345 67890",
    "THE SAME TITLE IN CAPITALS",
    "the same title in capitals",
    "a long description " + " ".join(f"word{k} and more words about the item" for k in range(60)),
    "x " * 400,
    "kitchen. kettle. copper, 1.7 litres, boils fast",
    item_text("blue mug", "kitchen", "a mug"),
    item_text("", None, "text only"),
    "Ελληνικά και русский текст",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="module")
def text_model(tmp_path_factory, encoder):
    """A tiny SASRec with text (i4 never trained: a text-only row), exported; (model, version folder, seconds)."""
    vocab = Vocabulary(tuple(i[0] for i in CATALOG), tuple(i[1] for i in CATALOG))
    texts = [item_text(title, category, text) for _, title, category, text in CATALOG]
    table, path = text_embeddings(texts, TextOptions(), "cpu", progress=False)
    cfg = ModelConfig(n_rows=vocab.n_rows, max_len=8, dim=16, n_layers=1, n_heads=1, text_dim=table.shape[1])
    seed_everything(0)
    model = build_model(cfg, (np.array([2, 3, 4]),), table).eval()
    with torch.no_grad():
        model.text_proj.bias.normal_()  # a visible bias: the row of an item without text
    start = time.perf_counter()
    version = write_artifact(
        model, vocab, tmp_path_factory.mktemp("models"), top_k=4, training={}, metrics={}, text_model=path
    )
    return model, version, time.perf_counter() - start


@pytest.fixture(scope="module")
def rows(text_model) -> TextRows:
    found = TextRows.load(load_artifact(text_model[1]))
    assert found is not None
    return found


def _training_rows(model, encoder, texts):
    """Training's text-only rows: ``text_proj(text_emb)``, a zero text embedding for an empty text."""
    emb = np.zeros((len(texts), model.config.text_dim), np.float32)
    which = [k for k, t in enumerate(texts) if t]
    emb[which] = encoder.encode([texts[k] for k in which], progress=False)
    with torch.no_grad():
        return model.text_proj(torch.from_numpy(emb)).numpy()


def test_manifest_lists_the_encoder_and_tokenizer(text_model):
    _, version, seconds = text_model
    m = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    text = m["text"]
    assert text["encoder"] == "text_encoder.onnx" and text["tokenizer"] == "tokenizer.json"
    assert (text["max_length"], text["pooling"], text["normalize"], text["dim"]) == (128, "mean", True, 384)
    for name in ("text_encoder.onnx", "tokenizer.json"):
        assert m["files"][name] == sha256_of(version / name)
    size = (version / "text_encoder.onnx").stat().st_size
    print(f"\nwrite_artifact with the text encoder: {seconds:.1f} s, text_encoder.onnx {size / 1e6:.1f} MB")


def test_rows_equal_training_text_only_rows(text_model, rows, encoder):
    model = text_model[0]
    expected = _training_rows(model, encoder, TEXTS)
    got = rows.projection(TEXTS)
    assert got.shape == (len(TEXTS), model.config.dim) and got.dtype == np.float32
    err = float(np.abs(got - expected).max())
    print(f"\nmax abs difference to training's text_proj(text_emb) over {len(TEXTS)} texts: {err:.2e}")
    assert err < 1e-4
    np.testing.assert_allclose(got[TEXTS.index("")], model.text_proj.bias.detach().numpy(), atol=1e-6)
    # batch size and order do not matter
    np.testing.assert_allclose(rows.projection(TEXTS[::-1], batch_size=3)[::-1], got, atol=1e-5)
    np.testing.assert_allclose(rows.projection([TEXTS[0]])[0], got[0], atol=1e-5)
    emb = rows.embed([t for t in TEXTS if t])
    np.testing.assert_allclose(emb, encoder.encode([t for t in TEXTS if t], progress=False), atol=1e-5)
    assert rows.rows([]).shape == (0, model.config.dim) == rows.projection([]).shape
    # what the worker adds (rows): by default the projection itself; with neighbour imputation, plus an id part
    assert rows.imputer is None
    np.testing.assert_allclose(rows.rows(TEXTS), got, atol=1e-6)
    imputed = TextRows.load(load_artifact(text_model[1]), calibration=Calibration())
    assert imputed is not None and imputed.imputer is not None
    calibrated = imputed.rows(TEXTS, batch_size=3)
    np.testing.assert_allclose(calibrated, got + imputed.imputer.id_part(rows.text_emb(TEXTS)), atol=1e-5)
    np.testing.assert_allclose(calibrated[TEXTS.index("")], got[TEXTS.index("")], atol=1e-6)  # no text: no id part


def test_rows_of_catalog_items_match_the_exported_item_table(text_model, rows):
    """i4 was never in a training sequence: its exported row is text-only, the row TextRows computes."""
    art = load_artifact(text_model[1])
    texts = [item_text(title, category, text) for _, title, category, text in CATALOG]
    got = rows.projection(texts)
    np.testing.assert_allclose(got[3], art.item_emb[art.item_ids.index("i4")], atol=1e-4)
    assert not np.allclose(got[0], art.item_emb[art.item_ids.index("i1")], atol=1e-3)  # trained: id + text


def test_the_dynamo_exporter_gives_the_same_embeddings(tmp_path, rows, encoder):
    """The torch.export-based exporter, should the TorchScript one go away."""
    keys = export_text_encoder(tmp_path, encoder.path, dynamo=True)
    session = ort.InferenceSession(str(tmp_path / keys["encoder"]), providers=["CPUExecutionProvider"])
    dynamo = TextRows(session, rows.tokenizer, rows.weight, rows.bias, rows.pad_id, rows.max_length)
    texts = [t for t in TEXTS if t]
    np.testing.assert_allclose(dynamo.embed(texts), encoder.encode(texts, progress=False), atol=1e-5)


def test_throughput_of_short_titles(rows):
    nouns = ("shoes", "kettle", "lamp", "mug")
    titles = [f"{c} {n} number {k}" for k in range(32) for c in ("red", "blue") for n in nouns]  # 256 titles
    rows.rows(titles[:64])  # warm-up
    start = time.perf_counter()
    rows.rows(titles, batch_size=64)
    seconds = time.perf_counter() - start
    print(f"\nTextRows.rows: {len(titles) / seconds:.0f} short titles/s (batch 64, 1 intra-op thread)")

"""TextRows without torch: which versions have a text encoder, the errors, and the arithmetic on a toy encoder."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from serving.artifact import (
    ITEM_EMB_FILE,
    ITEMS_FILE,
    ITEMS_HEADER,
    MODEL_FILE,
    TEXT_ENCODER_FILE,
    TEXT_PROJ_FILE,
    TEXT_TOKENIZER_FILE,
    ArtifactError,
    load_artifact,
)
from serving.publish import new_tmp_dir, publish
from serving.text_rows import TextRows, item_text

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = {"max_len": 4, "pad_id": 0, "unk_id": 1, "n_items": 2, "dim": 3, "top_k": 2}
TEXT = {
    "model": "toy",
    "dim": 2,
    "emb_file": None,
    "proj_file": TEXT_PROJ_FILE,
    "encoder": TEXT_ENCODER_FILE,
    "tokenizer": TEXT_TOKENIZER_FILE,
    "max_length": 3,
    "pooling": "mean",
    "normalize": True,
}
WEIGHT = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]], np.float32)  # [text_dim 2, dim 3]
BIAS = np.array([0.5, -0.5, 0.25], np.float32)
VOCAB = {"[PAD]": 0, "[UNK]": 1, "a": 2, "b": 3, "c": 4}


def _toy_encoder() -> bytes:
    """text_emb = [number of tokens, sum of token ids] per text (padding excluded)."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["kept"]),
        helper.make_node("Cast", ["kept"], ["kept_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mask_f", "axis"], ["count"], keepdims=1),
        helper.make_node("ReduceSum", ["kept_f", "axis"], ["total"], keepdims=1),
        helper.make_node("Concat", ["count", "total"], ["text_emb"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("text_emb", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("axis", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


def _toy_tokenizer() -> Tokenizer:
    tok = Tokenizer(WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


def _publish(tmp_path, text=None, encoder=b"", tokenizer=True):
    tmp = new_tmp_dir(tmp_path / "models")
    (tmp / MODEL_FILE).write_bytes(b"onnx bytes (the reader only hashes them)")
    np.save(tmp / ITEM_EMB_FILE, np.zeros((4, 3), np.float32))
    (tmp / ITEMS_FILE).write_text("\t".join(ITEMS_HEADER) + "\n2\ti1\tone\n3\ti2\ttwo\n", encoding="utf-8")
    if text is not None:
        np.savez(tmp / TEXT_PROJ_FILE, weight=WEIGHT, bias=BIAS)
        if encoder:
            (tmp / TEXT_ENCODER_FILE).write_bytes(encoder)
        if tokenizer is True:
            _toy_tokenizer().save(str(tmp / TEXT_TOKENIZER_FILE))
        elif tokenizer:
            (tmp / TEXT_TOKENIZER_FILE).write_text(tokenizer, encoding="utf-8")
    return load_artifact(publish(tmp, {**MANIFEST, "text": text}))


def test_item_text_is_the_training_text():
    assert item_text("blue mug", "kitchen", "a mug") == "blue mug. kitchen. a mug"
    assert item_text("", None, "only text") == "only text"
    assert item_text("", "", "") == ""


def test_versions_without_a_text_encoder_have_no_text_rows(tmp_path):
    assert TextRows.load(_publish(tmp_path)) is None  # trained with --no-text
    older = {k: TEXT[k] for k in ("model", "dim", "emb_file", "proj_file")}  # before the ONNX encoder
    assert TextRows.load(_publish(tmp_path, text=older)) is None


def test_a_broken_encoder_file_is_an_artifact_error(tmp_path):
    art = _publish(tmp_path, text=TEXT, encoder=b"not an onnx graph")
    with pytest.raises(ArtifactError, match=r"text_encoder.onnx cannot be loaded by onnxruntime.*re-export the model"):
        TextRows.load(art)


def test_a_missing_or_unreadable_tokenizer_is_an_artifact_error(tmp_path):
    art = _publish(tmp_path, text=TEXT, encoder=b"graph", tokenizer=False)  # the manifest names a file never written
    with pytest.raises(ArtifactError, match=r"tokenizer.json \(text.tokenizer\) is not listed.*re-export the model"):
        TextRows.load(art)
    art = _publish(tmp_path, text=TEXT, encoder=b"graph", tokenizer='{"not": "a tokenizer"}')
    with pytest.raises(ArtifactError, match=r"tokenizer.json is not a tokenizers JSON file.*re-export the model"):
        TextRows.load(art)
    art = _publish(tmp_path, text=TEXT, encoder=b"graph")
    (art.path / TEXT_TOKENIZER_FILE).unlink()  # deleted after publishing: the reader itself refuses the version
    with pytest.raises(ArtifactError, match=r"tokenizer.json is missing.*copy the whole version folder"):
        load_artifact(art.path)
    manifest = json.loads((art.path / "manifest.json").read_text())
    assert TEXT_TOKENIZER_FILE in manifest["files"] and TEXT_ENCODER_FILE in manifest["files"]


def test_rows_project_the_encoder_output(tmp_path):
    rows = TextRows.load(_publish(tmp_path, text=TEXT, encoder=_toy_encoder()))
    assert rows is not None and (rows.text_dim, rows.dim, rows.max_length) == (2, 3, 3)
    texts = ["a", "", "b c", "a b c a b", "zzz", " "]
    # tokens (truncated to 3): [2], -, [3, 4], [2, 3, 4], [1 (unknown)], a single space has no token
    emb = np.array([[1, 2], [0, 0], [2, 7], [3, 9], [1, 1], [0, 0]], np.float32)
    expected = emb @ WEIGHT + BIAS
    for batch_size in (1, 2, 64):
        np.testing.assert_allclose(rows.rows(texts, batch_size=batch_size), expected, atol=1e-6)
    np.testing.assert_allclose(rows.embed(["b c", "a"]), emb[[2, 0]], atol=1e-6)
    np.testing.assert_allclose(rows.rows([""]), BIAS[None, :], atol=1e-6)
    assert rows.rows([]).shape == (0, 3) and rows.rows(texts).dtype == np.float32


def test_the_worker_side_needs_neither_torch_nor_transformers():
    code = "import sys, serving.text_rows; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"

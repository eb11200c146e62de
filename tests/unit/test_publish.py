"""Writing a version goes through the worker's reader: a folder a worker cannot load is never published."""

import json

import numpy as np
import pytest

from serving.artifact import (
    ITEM_EMB_FILE,
    ITEMS_FILE,
    ITEMS_HEADER,
    MODEL_FILE,
    ArtifactError,
    list_versions,
    load_artifact,
)
from serving.publish import new_tmp_dir, publish

MANIFEST = {"max_len": 4, "pad_id": 0, "unk_id": 1, "n_items": 2, "dim": 3, "top_k": 2}


def _write(tmp, emb_rows=4):
    (tmp / MODEL_FILE).write_bytes(b"onnx bytes (the reader only hashes them)")
    np.save(tmp / ITEM_EMB_FILE, np.zeros((emb_rows, 3), np.float32))
    (tmp / ITEMS_FILE).write_text("\t".join(ITEMS_HEADER) + "\n2\ti1\tone\n3\ti2\ttwo\n", encoding="utf-8")


def test_a_valid_folder_is_published_and_read_back(tmp_path):
    tmp = new_tmp_dir(tmp_path / "models")
    _write(tmp)
    version = publish(tmp, dict(MANIFEST))
    assert list_versions(tmp_path / "models") == [version] and not tmp.exists()
    artifact = load_artifact(version)
    assert artifact.item_ids == ("", "", "i1", "i2") and artifact.n_items == 2
    manifest = json.loads((version / "manifest.json").read_text())
    assert version.name == manifest["model_version"] and set(manifest["files"]) == {
        MODEL_FILE,
        ITEM_EMB_FILE,
        ITEMS_FILE,
    }


def test_a_folder_the_worker_cannot_read_is_not_published(tmp_path):
    tmp = new_tmp_dir(tmp_path / "models")
    _write(tmp, emb_rows=5)  # one row too many for n_items = 2
    with pytest.raises(ArtifactError, match="item_emb.npy"):
        publish(tmp, dict(MANIFEST))
    assert list_versions(tmp_path / "models") == [] and not tmp.exists()
    tmp = new_tmp_dir(tmp_path / "models")
    _write(tmp)
    with pytest.raises(ArtifactError, match="lacks n_items"):
        publish(tmp, {k: v for k, v in MANIFEST.items() if k != "n_items"})

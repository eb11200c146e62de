"""Model artifact layout (docs/artifact.md, format version 1): names, hashing, writing, reading."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from encoders.vocab import Vocabulary

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
OPSET = 18
INPUTS = ("item_seq", "item_emb", "item_bias", "seen_penalty")
OUTPUTS = ("top_scores", "top_ids")
MODEL_FILE = "model.onnx"
ITEM_EMB_FILE = "item_emb.npy"
ITEMS_FILE = "items.tsv"
TEXT_EMB_FILE = "item_text_emb.npy"
TEXT_PROJ_FILE = "text_proj.npz"
MANIFEST_FILE = "manifest.json"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version_name(onnx_sha256: str, now: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ-<first 6 hex of model.onnx's sha256>``."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{onnx_sha256[:6]}"


def publish(tmp_dir: Path, manifest: dict[str, Any]) -> Path:
    """Hashes the files of ``tmp_dir``, writes the manifest, renames it into its version folder.

    ``tmp_dir`` must live in the model root. The version name uses the current UTC second; if
    that folder already exists (same model exported twice within a second) it waits a second.

    Returns:
        The final version folder.
    """
    root = tmp_dir.parent
    files = {p.name: sha256_file(p) for p in sorted(tmp_dir.iterdir()) if p.name != MANIFEST_FILE}
    onnx_sha = files[MODEL_FILE]
    while True:
        now = datetime.now(UTC).replace(microsecond=0)
        version = version_name(onnx_sha, now)
        if not (root / version).exists():
            break
        time.sleep(1.0)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_version": version,
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **manifest,
        "files": files,
    }
    (tmp_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    final = root / version
    os.replace(tmp_dir, final)
    logger.info("published model version %s", final)
    return final


def new_tmp_dir(model_root: str | Path) -> Path:
    """Creates a fresh hidden ``.tmp-<stamp>-<pid>`` folder in the model root."""
    root = Path(model_root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


@dataclass(frozen=True)
class LoadedArtifact:
    """An artifact version read back (for evaluation and tests)."""

    path: Path
    manifest: dict[str, Any]
    item_emb: np.ndarray
    item_ids: tuple[str, ...]


def read_artifact(version_dir: str | Path) -> LoadedArtifact:
    """Reads and checks a version folder: manifest, file hashes, ``items.tsv``, ``item_emb``.

    Raises:
        ValueError: with a sentence saying what is wrong.
    """
    d = Path(version_dir)
    mpath = d / MANIFEST_FILE
    if not mpath.is_file():
        raise ValueError(f"{d} has no {MANIFEST_FILE}; pass a model version folder (--model).")
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{mpath}: format_version must be {FORMAT_VERSION}.")
    for name, digest in manifest["files"].items():
        if not (d / name).is_file() or sha256_file(d / name) != digest:
            raise ValueError(f"{d / name} is missing or its sha256 differs from the manifest.")
    vocab = Vocabulary.read_tsv(d / ITEMS_FILE)
    emb = np.load(d / ITEM_EMB_FILE)
    if vocab.n_items != manifest["n_items"] or emb.shape != (vocab.n_rows, manifest["dim"]):
        raise ValueError(f"{d}: items.tsv / item_emb.npy do not match n_items and dim.")
    return LoadedArtifact(d, manifest, emb, vocab.item_ids)

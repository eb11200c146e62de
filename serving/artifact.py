"""The model artifact contract (docs/artifact.md): file names, graph inputs and outputs, the manifest, the reader.

Training writes a version folder through :mod:`serving.publish`, which checks it with :func:`load_artifact`,
the reader the worker uses: the format the worker reads is the format training writes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
ITEM_EMB_FILE = "item_emb.npy"
ITEMS_FILE = "items.tsv"
TEXT_EMB_FILE = "item_text_emb.npy"  # optional: the text-embedding rows (cold start)
TEXT_PROJ_FILE = "text_proj.npz"  # optional: the learned projection of text into item space
TEXT_ENCODER_FILE = "text_encoder.onnx"  # optional: item text -> text embedding (new items' rows, serving/text_rows.py)
TEXT_TOKENIZER_FILE = "tokenizer.json"  # optional: the text encoder's tokenizer (Hugging Face `tokenizers` JSON)
TEXT_ENCODER_INPUTS = ("input_ids", "attention_mask")  # int64 [batch, tokens]
TEXT_ENCODER_OUTPUT = "text_emb"  # float32 [batch, text_dim], mean-pooled and L2-normalised
INPUTS = ("item_seq", "item_emb", "item_bias", "seen_penalty")
NEW_ROW_INPUTS = ("item_new", "new_mix")  # float32 [n_rows] and [3]: ranking new rows against trained ones
BEHAVIOUR_INPUTS = ("type_seq", "scenario_seq")  # int64 [batch, length]: only in a model that reads behaviour
LIST_LENGTH_INPUT = "top_k"  # int64 [1], optional (an initializer that a call may override): items per list
OUTPUTS = ("top_scores", "top_ids")
REQUIRED = ("format_version", "model_version", "files", "max_len", "pad_id", "unk_id", "n_items", "dim", "top_k")
REQUIRED_FILES = (MODEL_FILE, ITEM_EMB_FILE, ITEMS_FILE)
ITEMS_HEADER = ("internal_id", "item_id", "title")


class ArtifactError(RuntimeError):
    """A model directory that cannot be served; the message says what to do."""


@dataclass(frozen=True)
class Artifact:
    """A validated model version, ready for an inference session."""

    path: Path
    manifest: dict[str, Any]
    item_ids: tuple[str, ...]  # index = internal id; rows 0 (pad) and 1 (unknown) are ""
    item_emb: np.ndarray  # float32 [n_items + 2, dim]

    @property
    def version(self) -> str:
        return str(self.manifest["model_version"])

    @property
    def n_items(self) -> int:
        return int(self.manifest["n_items"])

    @property
    def max_len(self) -> int:
        return int(self.manifest["max_len"])

    @property
    def top_k(self) -> int:
        return int(self.manifest["top_k"])

    @property
    def onnx_path(self) -> Path:
        return self.path / MODEL_FILE


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise ArtifactError(f"model directory {path} does not exist: train one with `streamrec train --out {path}`")
    if not manifest_path.is_file():
        raise ArtifactError(f"{manifest_path} is missing: {path} is not a model version folder (see docs/artifact.md)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArtifactError(f"{manifest_path} is not valid JSON ({exc}); re-export the model") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_path} must hold a JSON object; re-export the model")
    missing = [name for name in REQUIRED if name not in manifest]
    if missing:
        raise ArtifactError(
            f"{manifest_path} lacks {', '.join(missing)}; re-export the model with this streamrec version"
        )
    if manifest["format_version"] != FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path} has format_version {manifest['format_version']}, this worker reads {FORMAT_VERSION}: "
            "export the model with a matching streamrec version"
        )
    return manifest


def _check_files(path: Path, files: dict[str, str]) -> None:
    for name in REQUIRED_FILES:
        if name not in files:
            raise ArtifactError(f"{path / MANIFEST} does not list {name}; re-export the model")
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{file} is missing (listed in the manifest); copy the whole version folder")
        actual = sha256_of(file)
        if actual != expected:
            raise ArtifactError(
                f"{file} is corrupt: sha256 {actual[:12]}… differs from the manifest's {expected[:12]}…"
            )


def _read_items(path: Path, n_items: int) -> tuple[str, ...]:
    with (path / ITEMS_FILE).open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or tuple(rows[0][:2]) != ITEMS_HEADER[:2]:
        raise ArtifactError(f"{path / ITEMS_FILE} must start with the header 'internal_id<TAB>item_id<TAB>title'")
    body = rows[1:]
    if len(body) != n_items:
        raise ArtifactError(f"{path / ITEMS_FILE} has {len(body)} items, the manifest says {n_items}")
    ids = ["", ""]
    for expected, row in enumerate(body, start=2):
        if len(row) < 2 or row[0] != str(expected) or not row[1]:
            raise ArtifactError(f"{path / ITEMS_FILE} line {expected}: expected internal id {expected} and an item id")
        ids.append(row[1])
    if len(set(ids[2:])) != n_items:
        raise ArtifactError(f"{path / ITEMS_FILE} repeats an item id")
    return tuple(ids)


def load_artifact(path: Path | str) -> Artifact:
    """Read and validate one model version folder.

    Raises:
        ArtifactError: with a sentence saying what is wrong and what to do.
    """
    path = Path(path)
    manifest = _read_manifest(path)
    _check_files(path, manifest["files"])
    n_items, dim = int(manifest["n_items"]), int(manifest["dim"])
    item_ids = _read_items(path, n_items)
    try:
        item_emb = np.load(path / ITEM_EMB_FILE, allow_pickle=False)
    except ValueError as exc:
        raise ArtifactError(f"{path / ITEM_EMB_FILE} is not a numpy array file ({exc})") from None
    if item_emb.dtype != np.float32 or item_emb.shape != (n_items + 2, dim):
        raise ArtifactError(
            f"{path / ITEM_EMB_FILE} is {item_emb.dtype}{list(item_emb.shape)}, expected float32[{n_items + 2}, {dim}]"
        )
    return Artifact(path, manifest, item_ids, np.ascontiguousarray(item_emb))


def list_versions(root: Path | str) -> list[Path]:
    """Version folders under a model root, oldest first (hidden/temporary folders skipped)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file())


def newest_version(folder: Path | str) -> Path | None:
    """``folder`` itself if it is a version folder, else its newest version, else None."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        return folder
    versions = list_versions(folder)
    return versions[-1] if versions else None


def resolve_version(model_dir: Path | str) -> Path:
    """``model_dir`` itself if it is a version folder, else its newest version.

    Raises:
        ArtifactError: when there is no model at all.
    """
    version = newest_version(model_dir)
    if version is None:
        raise ArtifactError(
            f"no model found in {model_dir}: train one with `streamrec train --events FILE --out {model_dir}` "
            "or set STREAMREC_MODEL_DIR to a model root or version folder"
        )
    return version

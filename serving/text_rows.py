"""Item rows from item text at run time: the artifact's ONNX text encoder + tokenizer + projection, no torch.

Training builds the row of an item it has never seen (cold start) as ``text_proj(text_emb)`` where ``text_emb`` is the
item's mean-pooled, L2-normalised MiniLM embedding of :func:`item_text` (a zero vector when the item has no text).
:class:`TextRows` computes the same row for a brand-new item from the files a version ships (docs/artifact.md):
``text_encoder.onnx`` (transformer + pooling + normalisation), ``tokenizer.json`` and ``text_proj.npz``
(:meth:`TextRows.projection`).

A text-only row lacks the id part that trained rows (``id_emb + text_proj(text_emb)``) have. :meth:`TextRows.rows`
(what the worker adds) can calibrate it (:class:`Calibration`, :class:`NeighbourImputer`): **neighbour imputation**
adds a softmax-weighted mean of the id parts of the item's ``neighbours`` most text-similar trained items (the id part
of a trained item is its exported row minus ``text_proj`` of its exported text embedding: ``item_emb.npy``,
``item_text_emb.npy``, ``text_proj.npz``, nothing but the version's own files), and ``row_scale`` scales the row.
It is off unless the manifest names one (``text.calibration``) or the caller passes one: measured through the worker's
path it did not help (docs/model.md, "Cold start").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from serving.artifact import (
    TEXT_EMB_FILE,
    TEXT_ENCODER_INPUTS,
    TEXT_ENCODER_OUTPUT,
    TEXT_PROJ_FILE,
    Artifact,
    ArtifactError,
)

logger = logging.getLogger(__name__)

REEXPORT = "re-export the model with this streamrec version (`streamrec export --checkpoint FILE.pt --out ROOT`)"


def item_text(title: str, category: str | None, text: str) -> str:
    """The text fed to the text encoder for one item: ``title. category. text``, empty parts left out.

    The one definition, used by training (``encoders.data.ItemInfo.full_text``) and by the worker.
    """
    return ". ".join(p for p in (title, category, text) if p)


@dataclass(frozen=True)
class Calibration:
    """Neighbour imputation of a new item's id part (see the module docstring and :class:`NeighbourImputer`).

    A new item's row is ``row_scale * (text_proj(text_emb) + scale * imputed_id_part)``.

    Attributes:
        neighbours: how many of the most text-similar trained items are averaged.
        temperature: softmax temperature over their cosine similarities (small: the nearest dominates).
        scale: multiplier of the imputed id part (0: none).
        row_scale: multiplier of the whole row (below 1: new items score closer to 0, fewer reach a list).
    """

    neighbours: int = 10
    temperature: float = 0.05
    scale: float = 1.0
    row_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.neighbours < 1 or not self.temperature > 0 or not self.scale >= 0 or not self.row_scale > 0:
            raise ValueError(f"invalid calibration {self}: neighbours >= 1, temperature > 0, scale >= 0, row_scale > 0")


# What TextRows.load gives a version whose manifest names no ``text.calibration``: the plain projection. Neighbour
# imputation did not raise the whole-catalog NDCG@10 of users whose next item is new, on the simulator or ML-1M, for any
# setting that costs warm users less than 2% (docs/model.md, "Cold start"), so it is opt-in.
DEFAULT_CALIBRATION: Calibration | None = None


class NeighbourImputer:
    """The id part of a new item's row from the id parts of the trained items whose text is closest to its text.

    Args:
        text_emb: float32 ``[m, text_dim]`` text embeddings of the trained items that have a text.
        id_parts: float32 ``[m, dim]`` their id parts (exported row minus ``text_proj(text_emb)``).
        calibration: neighbours, temperature and scale.
    """

    def __init__(self, text_emb: np.ndarray, id_parts: np.ndarray, calibration: Calibration) -> None:
        norm = np.linalg.norm(text_emb, axis=1, keepdims=True)
        self.unit = (text_emb / np.maximum(norm, 1e-12)).astype(np.float32)  # [m, text_dim]
        self.id_parts = np.ascontiguousarray(id_parts, dtype=np.float32)  # [m, dim]
        self.calibration = calibration

    @classmethod
    def from_table(
        cls,
        item_emb: np.ndarray,
        text_emb: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray,
        calibration: Calibration,
        rows: np.ndarray | None = None,
    ) -> NeighbourImputer | None:
        """From an exported item table: the trained rows with a text and an id part (catalog-only rows, trained as
        text-only rows, have none), or None when there is no such row.

        Args:
            item_emb: float32 ``[n_rows, dim]`` (``item_emb.npy``).
            text_emb: float32 ``[n_rows, text_dim]`` (``item_text_emb.npy``; zero rows: no text).
            weight, bias: the text projection (``text_proj.npz``).
            calibration: neighbours, temperature and scale.
            rows: only these rows may be neighbours (default: all items, rows >= 2).
        """
        proj = text_emb @ weight + bias  # [n_rows, dim]
        parts = item_emb - proj  # [n_rows, dim]
        has_text = np.linalg.norm(text_emb, axis=1) > 0
        has_id = np.linalg.norm(parts, axis=1) > 1e-4 * (1.0 + np.linalg.norm(item_emb, axis=1))
        keep = has_text & has_id
        keep[:2] = False  # pad and unknown
        if rows is not None:
            only = np.zeros_like(keep)
            only[np.asarray(rows, dtype=np.int64)] = True
            keep &= only
        if not keep.any():
            return None
        return cls(text_emb[keep], parts[keep], calibration)

    def __len__(self) -> int:
        return int(self.id_parts.shape[0])

    def id_part(self, text_emb: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Imputed id parts ``[n, dim]`` of items with these text embeddings (zero for a zero embedding).

        Cost: one ``[n, text_dim] x [text_dim, m]`` product and a partial sort of its rows, in chunks of at most
        ``batch_size`` items and about 16M similarities.
        """
        cal = self.calibration
        k = min(cal.neighbours, len(self))
        batch_size = max(1, min(batch_size, (1 << 24) // len(self)))
        out = np.zeros((len(text_emb), self.id_parts.shape[1]), dtype=np.float32)
        norm = np.linalg.norm(text_emb, axis=1)
        for start in range(0, len(text_emb), batch_size):
            chunk = np.arange(start, min(start + batch_size, len(text_emb)))
            chunk = chunk[norm[chunk] > 0]
            if chunk.size == 0:
                continue
            unit = text_emb[chunk] / norm[chunk, None]  # [b, text_dim]
            sims = unit @ self.unit.T  # [b, m]
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.argsort(-sims, axis=1)
            near = np.take_along_axis(sims, top, axis=1)  # [b, k]
            w = np.exp((near - near.max(axis=1, keepdims=True)) / cal.temperature)  # [b, k]
            w /= w.sum(axis=1, keepdims=True)
            out[chunk] = cal.scale * np.einsum("bk,bkd->bd", w, self.id_parts[top])  # [b, dim]
        return out


class TextRows:
    """Item-table rows from item texts: training's text-only (cold-start) rows, calibrated against the trained rows.

    Build it with :meth:`load`. :meth:`rows`, :meth:`projection` and :meth:`embed` are blocking (call them from a
    worker thread); onnxruntime sessions and tokenizers may be used from several threads at once.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        weight: np.ndarray,
        bias: np.ndarray,
        pad_id: int,
        max_length: int,
        imputer: NeighbourImputer | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.weight = weight  # float32 [text_dim, dim]
        self.bias = bias  # float32 [dim]
        self.pad_id = pad_id
        self.max_length = max_length
        self.imputer = imputer
        self.calibration = calibration
        self.text_dim, self.dim = int(weight.shape[0]), int(weight.shape[1])
        self.device = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"

    @classmethod
    def load(
        cls,
        artifact: Artifact,
        device: str = "cpu",
        threads: int = 1,
        calibration: Calibration | None | str = "auto",
    ) -> TextRows | None:
        """The text rows of a model version, or None when it ships no text encoder.

        A version has none when it was trained without text (``--no-text``) or exported by an older
        streamrec (only ``item_text_emb.npy`` and ``text_proj.npz``).

        Args:
            artifact: a version read by :func:`serving.artifact.load_artifact` (file hashes already checked).
            device: "cpu", "cuda" or "auto", as the worker's engine (:func:`serving.engine.select_providers`).
            threads: onnxruntime intra-op threads (0: onnxruntime's default, one per core).
            calibration: the neighbour imputation of :meth:`rows`; None: :meth:`rows` is the plain
                :meth:`projection` (also when the version ships no ``item_text_emb.npy``); "auto": the manifest's
                ``text.calibration`` when it has one (an object with :class:`Calibration`'s fields, or null for the
                plain projection), else :data:`DEFAULT_CALIBRATION` (the plain projection).

        Raises:
            ArtifactError: a text file is missing, unreadable or does not match the manifest.
        """
        text = artifact.manifest.get("text")
        if not isinstance(text, dict) or not text.get("encoder"):
            return None
        path = artifact.path
        names = {
            "encoder": text.get("encoder"),
            "tokenizer": text.get("tokenizer"),
            "proj_file": text.get("proj_file", TEXT_PROJ_FILE),
        }
        files = artifact.manifest.get("files", {})
        for key, name in names.items():
            if not isinstance(name, str) or not name:
                raise ArtifactError(f"{path / 'manifest.json'}: text.{key} must name a file; {REEXPORT}")
            if name not in files:
                raise ArtifactError(f"{path / name} (text.{key}) is not listed in the manifest's files; {REEXPORT}")
            if not (path / name).is_file():
                raise ArtifactError(f"{path / name} is missing (text.{key}); copy the whole version folder")
        try:
            max_length = int(text.get("max_length", 0))
        except (TypeError, ValueError):
            max_length = 0
        if max_length < 2:
            raise ArtifactError(f"{path / 'manifest.json'}: text.max_length must be an integer >= 2; {REEXPORT}")
        tokenizer, pad_id = _read_tokenizer(path / names["tokenizer"], max_length)
        weight, bias = _read_projection(path / names["proj_file"], int(artifact.manifest["dim"]))
        session = _open_session(path / names["encoder"], device, threads)
        out = session.get_outputs()[0]
        width = out.shape[-1] if out.shape else None
        if isinstance(width, int) and width != weight.shape[0]:
            raise ArtifactError(
                f"{path / names['encoder']} gives {width}-dim text embeddings, {path / names['proj_file']} "
                f"projects {weight.shape[0]}-dim ones; {REEXPORT}"
            )
        if calibration == "auto":
            calibration = _manifest_calibration(path, text)
        elif calibration is not None and not isinstance(calibration, Calibration):
            raise ValueError(f"calibration must be a Calibration, None or 'auto', not {calibration!r}")
        imputer = None
        if calibration is not None and calibration.scale > 0:
            text_emb = _read_text_emb(artifact, text.get("emb_file", TEXT_EMB_FILE), weight.shape[0])
            if text_emb is not None:
                imputer = NeighbourImputer.from_table(artifact.item_emb, text_emb, weight, bias, calibration)
        rows = cls(session, tokenizer, weight, bias, pad_id, max_length, imputer, calibration)
        logger.info(
            "text encoder of model %s loaded on %s: %d-dim text, max %d tokens; new rows: %s",
            artifact.version,
            rows.device,
            rows.text_dim,
            max_length,
            f"{calibration}, id parts imputed from {len(imputer) if imputer is not None else 0} trained items"
            if calibration is not None
            else "the plain text projection",
        )
        return rows

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Normalised text embeddings, as ``encoders.text.TextEncoder.encode``: float32 ``[n, text_dim]``.

        An empty text is embedded as a single space, as the training encoder does; :meth:`rows` gives such
        items the zero embedding instead, as training does for items without text.
        """
        out = np.zeros((len(texts), self.text_dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch([t or " " for t in texts])
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        # shortest first: batches of similar lengths pad less; each text's embedding does not depend on its batch
        order = np.argsort([len(x) for x in ids], kind="stable")
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(1, max(len(ids[k]) for k in chunk))
            input_ids = np.full((len(chunk), width), self.pad_id, dtype=np.int64)  # [B, T]
            mask = np.zeros((len(chunk), width), dtype=np.int64)  # [B, T]
            for row, k in enumerate(chunk):
                input_ids[row, : len(ids[k])] = ids[k]
                mask[row, : len(ids[k])] = 1
            feeds = {TEXT_ENCODER_INPUTS[0]: input_ids, TEXT_ENCODER_INPUTS[1]: mask}
            out[chunk] = self.session.run([TEXT_ENCODER_OUTPUT], feeds)[0]
        return out

    def text_emb(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Text embeddings as training stores them: float32 ``[n, text_dim]``, zero for an empty text."""
        emb = np.zeros((len(texts), self.text_dim), dtype=np.float32)  # [n, text_dim]
        which = [k for k, t in enumerate(texts) if t]
        if which:
            emb[which] = self.embed([texts[k] for k in which], batch_size)
        return emb

    def projection(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Training's text-only rows ``text_proj(text_emb)`` of items with these texts (see :func:`item_text`).

        An empty text gives the projection of a zero text embedding (the bias), as training does for an
        item without text.

        Returns:
            float32 ``[len(texts), dim]``.
        """
        return self._project(self.text_emb(texts, batch_size))

    def _project(self, emb: np.ndarray) -> np.ndarray:
        return (emb @ self.weight + self.bias).astype(np.float32, copy=False)  # [n, dim]

    def rows(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """The rows the worker adds for new items with these texts: :meth:`projection` plus the id part imputed
        from the most text-similar trained items, times ``row_scale`` (when calibrated, see :class:`Calibration`;
        an empty text gets no id part).

        Returns:
            float32 ``[len(texts), dim]``.
        """
        emb = self.text_emb(texts, batch_size)
        out = self._project(emb)  # [n, dim]
        if self.imputer is not None:
            out = out + self.imputer.id_part(emb)
        if self.calibration is not None and self.calibration.row_scale != 1.0:
            out = out * self.calibration.row_scale
        return out.astype(np.float32, copy=False)


def _manifest_calibration(path: Path, text: dict[str, Any]) -> Calibration | None:
    """The manifest's ``text.calibration`` (null: the plain projection), else :data:`DEFAULT_CALIBRATION`."""
    if "calibration" not in text:
        return DEFAULT_CALIBRATION
    value = text["calibration"]
    if value is None:
        return None
    try:
        return Calibration(**value)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(
            f"{path / 'manifest.json'}: text.calibration {value!r} is not a calibration ({exc}); {REEXPORT}"
        ) from None


def _read_text_emb(artifact: Artifact, name: Any, text_dim: int) -> np.ndarray | None:
    """The exported text embeddings of the item table, or None when the version ships none."""
    path = artifact.path
    if not isinstance(name, str) or not name or name not in artifact.manifest.get("files", {}):
        logger.info("model %s ships no item text embeddings: new rows are the plain projection", artifact.version)
        return None
    try:
        table = np.load(path / name, allow_pickle=False)
    except Exception as exc:
        raise ArtifactError(f"{path / name} is not a numpy array file ({exc}); {REEXPORT}") from None
    if table.shape != (artifact.item_emb.shape[0], text_dim):
        raise ArtifactError(
            f"{path / name} is {list(table.shape)}, expected [{artifact.item_emb.shape[0]}, {text_dim}]; {REEXPORT}"
        )
    return np.ascontiguousarray(table, dtype=np.float32)


def _read_tokenizer(path: Path, max_length: int) -> tuple[Tokenizer, int]:
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ArtifactError(f"{path} is not a tokenizers JSON file ({exc}); {REEXPORT}") from None
    padding: dict[str, Any] | None = tokenizer.padding
    pad_id = int(padding["pad_id"]) if padding else 0
    tokenizer.no_padding()  # TextRows pads itself, per batch of similar lengths
    tokenizer.enable_truncation(max_length)  # as the training tokenizer: longest_first, right, stride 0
    return tokenizer, pad_id


def _read_projection(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            weight, bias = npz["weight"], npz["bias"]
    except Exception as exc:
        raise ArtifactError(f"{path} is not an npz file with arrays 'weight' and 'bias' ({exc}); {REEXPORT}") from None
    if weight.ndim != 2 or weight.shape[1] != dim or bias.shape != (dim,):
        raise ArtifactError(
            f"{path} holds weight{list(weight.shape)} and bias{list(bias.shape)}, expected [text_dim, {dim}] and "
            f"[{dim}]; {REEXPORT}"
        )
    return np.ascontiguousarray(weight, dtype=np.float32), np.ascontiguousarray(bias, dtype=np.float32)


def _open_session(path: Path, device: str, threads: int) -> ort.InferenceSession:
    from serving.engine import select_providers  # lazily: the engine may use this module

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=select_providers(device))
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(f"{path} cannot be loaded by onnxruntime ({exc}); {REEXPORT}") from None
    names_in = sorted(i.name for i in session.get_inputs())
    names_out = [o.name for o in session.get_outputs()]
    if names_in != sorted(TEXT_ENCODER_INPUTS) or names_out != [TEXT_ENCODER_OUTPUT]:
        raise ArtifactError(
            f"{path} has inputs {names_in} and outputs {names_out}; expected {list(TEXT_ENCODER_INPUTS)} and "
            f"['{TEXT_ENCODER_OUTPUT}'] (docs/artifact.md); {REEXPORT}"
        )
    return session

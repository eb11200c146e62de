"""Item rows from item text at run time: the artifact's ONNX text encoder + tokenizer + projection, no torch.

Training builds the row of an item it has never seen (cold start) as ``text_proj(text_emb)`` where ``text_emb`` is the
item's mean-pooled, L2-normalised MiniLM embedding of :func:`item_text` (a zero vector when the item has no text).
:class:`TextRows` computes the same row for a brand-new item from the files a version ships (docs/artifact.md):
``text_encoder.onnx`` (transformer + pooling + normalisation), ``tokenizer.json`` and ``text_proj.npz``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from serving.artifact import (
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


class TextRows:
    """Item-table rows from item texts, as training computes text-only (cold-start) rows.

    Build it with :meth:`load`. :meth:`rows` and :meth:`embed` are blocking (call them from a worker thread);
    onnxruntime sessions and tokenizers may be used from several threads at once.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        weight: np.ndarray,
        bias: np.ndarray,
        pad_id: int,
        max_length: int,
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.weight = weight  # float32 [text_dim, dim]
        self.bias = bias  # float32 [dim]
        self.pad_id = pad_id
        self.max_length = max_length
        self.text_dim, self.dim = int(weight.shape[0]), int(weight.shape[1])
        self.device = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"

    @classmethod
    def load(cls, artifact: Artifact, device: str = "cpu", threads: int = 1) -> TextRows | None:
        """The text rows of a model version, or None when it ships no text encoder.

        A version has none when it was trained without text (``--no-text``) or exported by an older
        streamrec (only ``item_text_emb.npy`` and ``text_proj.npz``).

        Args:
            artifact: a version read by :func:`serving.artifact.load_artifact` (file hashes already checked).
            device: "cpu", "cuda" or "auto", as the worker's engine (:func:`serving.engine.select_providers`).
            threads: onnxruntime intra-op threads (0: onnxruntime's default, one per core).

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
        rows = cls(session, tokenizer, weight, bias, pad_id, max_length)
        logger.info(
            "text encoder of model %s loaded on %s: %d-dim text, max %d tokens",
            artifact.version,
            rows.device,
            rows.text_dim,
            max_length,
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

    def rows(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Item-table rows ``text_proj(text_emb)`` of items with these texts (see :func:`item_text`).

        An empty text gives the projection of a zero text embedding (the bias), as training does for an
        item without text.

        Returns:
            float32 ``[len(texts), dim]``.
        """
        emb = np.zeros((len(texts), self.text_dim), dtype=np.float32)  # [n, text_dim]
        which = [k for k, t in enumerate(texts) if t]
        if which:
            emb[which] = self.embed([texts[k] for k in which], batch_size)
        return (emb @ self.weight + self.bias).astype(np.float32, copy=False)  # [n, dim]


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

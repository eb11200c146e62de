"""Batched top-k inference for one model version with onnxruntime (CUDA when present, else CPU)."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from serving.artifact import INPUTS, OUTPUTS, Artifact, ArtifactError

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One recommended item: external id, model score, history item that supports it most."""

    item_id: str
    score: float
    because: str | None = None


def cuda_available() -> bool:
    """True when onnxruntime has the CUDA provider and a CUDA driver is installed."""
    if CUDA not in ort.get_available_providers():
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def select_providers(device: str) -> list[str]:
    """Execution providers for ``device`` in {"auto", "cuda", "cpu"}.

    Raises:
        ArtifactError: when "cuda" is asked for and is not available.
    """
    if device == "cpu":
        return [CPU]
    if cuda_available():
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            try:
                preload()
            except Exception as exc:  # preload is best effort; the session creation reports real failures
                logger.debug("onnxruntime.preload_dlls failed: %s", exc)
        return [CUDA, CPU]
    if device == "cuda":
        raise ArtifactError(
            "STREAMREC_DEVICE=cuda but the CUDA execution provider is not usable here "
            "(install onnxruntime-gpu and an NVIDIA driver, or set STREAMREC_DEVICE=auto)"
        )
    return [CPU]


class Engine:
    """One onnxruntime session for one model version.

    ``recommend`` is blocking: call it from a worker thread, never on the event loop.
    """

    def __init__(
        self,
        artifact: Artifact,
        device: str = "auto",
        max_batch: int = 256,
        threads: int = 0,
        exclude_seen: bool = True,
    ) -> None:
        self.artifact = artifact
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(artifact.onnx_path), options, providers=select_providers(device))
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(f"{artifact.onnx_path} cannot be loaded by onnxruntime: {exc}") from None
        names_in = tuple(i.name for i in self.session.get_inputs())
        names_out = tuple(o.name for o in self.session.get_outputs())
        if sorted(names_in) != sorted(INPUTS) or sorted(names_out) != sorted(OUTPUTS):
            raise ArtifactError(
                f"{artifact.onnx_path} has inputs {names_in} and outputs {names_out}; "
                f"expected {INPUTS} and {OUTPUTS} (docs/artifact.md): re-export the model"
            )
        self.device = "cuda" if CUDA in self.session.get_providers() else "cpu"
        self.max_len = artifact.max_len
        self.max_batch = max_batch
        self.vocab = {item: index for index, item in enumerate(artifact.item_ids) if index >= 2}
        unk_id = int(artifact.manifest["unk_id"])
        self._unk_id = unk_id
        self._item_emb = artifact.item_emb
        bias = np.zeros(len(artifact.item_ids), dtype=np.float32)
        bias[[int(artifact.manifest["pad_id"]), unk_id]] = -np.inf
        self.item_bias = bias
        self._seen_penalty = np.array([-np.inf if exclude_seen else 0.0], dtype=np.float32)
        self._seq = np.zeros((max_batch, self.max_len), dtype=np.int64)
        self._device_inputs: dict[str, ort.OrtValue] = {}
        if self.device == "cuda":
            for name, array in (
                ("item_emb", self._item_emb),
                ("item_bias", self.item_bias),
                ("seen_penalty", self._seen_penalty),
            ):
                self._device_inputs[name] = ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0)
        logger.info(
            "model %s loaded on %s (providers %s): %d items, max_len %d, top_k %d",
            self.version,
            self.device,
            self.session.get_providers(),
            len(self.vocab),
            self.max_len,
            artifact.top_k,
        )

    @property
    def version(self) -> str:
        return self.artifact.version

    def encode(self, sequences: Sequence[Sequence[str]]) -> np.ndarray:
        """External item sequences to a left-padded int64 batch; unknown items map to ``unk_id``."""
        batch = len(sequences)
        seq = self._seq[:batch] if batch <= self.max_batch else np.zeros((batch, self.max_len), np.int64)
        seq.fill(0)
        vocab_get, unk, length = self.vocab.get, self._unk_id, self.max_len
        for row, items in enumerate(sequences):
            tail = items[-length:]
            if tail:
                seq[row, length - len(tail) :] = [vocab_get(item, unk) for item in tail]
        return seq

    def score(self, item_seq: np.ndarray, item_bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One onnxruntime call: top scores [B, top_k] and internal ids [B, top_k].

        ``item_bias`` replaces the model's bias row for this call (-inf removes an item from every list).
        """
        if self.device == "cuda":
            binding = self.session.io_binding()
            binding.bind_cpu_input("item_seq", item_seq)
            for name, value in self._device_inputs.items():
                if name == "item_bias" and item_bias is not None:
                    binding.bind_cpu_input(name, item_bias)
                else:
                    binding.bind_ortvalue_input(name, value)
            for name in OUTPUTS:
                binding.bind_output(name, "cpu")
            self.session.run_with_iobinding(binding)
            scores, ids = binding.copy_outputs_to_cpu()
        else:
            scores, ids = self.session.run(
                list(OUTPUTS),
                {
                    "item_seq": item_seq,
                    "item_emb": self._item_emb,
                    "item_bias": self.item_bias if item_bias is None else item_bias,
                    "seen_penalty": self._seen_penalty,
                },
            )
        return scores, ids

    def because(self, item_seq: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """For each recommended item, the history position whose embedding agrees with it most (-1: none)."""
        emb = self._item_emb
        sims = np.matmul(emb[ids], emb[item_seq].transpose(0, 2, 1))  # [B, k, L]
        known = (item_seq >= 2)[:, None, :]  # [B, 1, L]
        sims = np.where(known, sims, -np.inf)
        best = sims.argmax(axis=2)  # [B, k]
        return np.where(known.any(axis=2), best, -1)

    def recommend(
        self, sequences: Sequence[Sequence[str]], k: int, item_bias: np.ndarray | None = None
    ) -> list[list[ScoredItem]]:
        """Top-``k`` items for each sequence, in one model call per ``max_batch`` sequences (``item_bias``: see
        :meth:`score`)."""
        if k > self.artifact.top_k:
            raise ValueError(f"k={k} is larger than the model's top_k={self.artifact.top_k}")
        results: list[list[ScoredItem]] = []
        for start in range(0, len(sequences), self.max_batch):
            chunk = sequences[start : start + self.max_batch]
            item_seq = self.encode(chunk)
            scores, ids = self.score(item_seq, item_bias)
            scores, ids = scores[:, :k], ids[:, :k]
            support = self.because(item_seq, ids)
            names = self.artifact.item_ids
            for row in range(len(chunk)):
                history = item_seq[row]
                row_items = []
                for col in range(k):
                    score = float(scores[row, col])
                    if not np.isfinite(score):
                        break
                    pos = int(support[row, col])
                    row_items.append(ScoredItem(names[ids[row, col]], score, names[history[pos]] if pos >= 0 else None))
                results.append(row_items)
        return results

    def warmup(self) -> None:
        """Run a full batch and a single sequence once, so the first real call is not slow."""
        some = [self.artifact.item_ids[2]] if len(self.artifact.item_ids) > 2 else []
        self.recommend([some] * self.max_batch, 1)
        self.recommend([some], 1)

"""Batched top-k inference for one model version with onnxruntime (CUDA when present, else CPU)."""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import onnxruntime as ort

from serving.artifact import (
    BEHAVIOUR_INPUTS,
    INPUTS,
    LIST_LENGTH_INPUT,
    NEW_ROW_INPUTS,
    OUTPUTS,
    Artifact,
    ArtifactError,
)
from serving.behaviour import OTHER, PAD, Behaviours
from serving.mixture import DEFAULT_MIX, NewRowMix
from serving.widths import split_by_width

logger = logging.getLogger(__name__)

Behaviour = tuple[Sequence[str | None], Sequence[str | None]]  # a sequence's event types and scenarios
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class ScoredItem(NamedTuple):
    """One recommended item: external id, model score, history item that supports it most.

    A named tuple, not a frozen dataclass: a batch of 256 users makes 25,600 of them, and a frozen dataclass
    takes about 2.5 times as long to build (its ``__init__`` sets each field through ``object.__setattr__``).
    """

    item_id: str
    score: float
    because: str | None = None


@dataclass(frozen=True, slots=True)
class ItemRows:
    """The items an engine can recommend, as of one moment: what a batch is scored against.

    The trained rows first, then the rows added while serving (new catalog items, from their text). A snapshot is
    never modified: adding items makes a new one, so a batch in flight keeps a consistent view.
    """

    version: str
    names: tuple[str, ...]  # row -> external item id; rows 0 (pad) and 1 (unknown) are ""
    vocab: dict[str, int]  # external item id -> row
    emb: np.ndarray  # float32 [rows, dim]
    item_bias: np.ndarray  # float32 [rows]: pad and unknown -inf
    device: dict[str, ort.OrtValue]  # the same on the GPU (CUDA only)
    item_new: np.ndarray  # float32 [rows]: 1 on the rows added while serving (trained rows come first)

    def __len__(self) -> int:
        return len(self.names)


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

    ``recommend`` is blocking: call it from a worker thread, never on the event loop. ``new_rows``: how the rows
    added with :meth:`add_items` compete with the trained ones (:mod:`serving.mixture`); None ranks them by their
    raw scores, as a version exported before the mixture always does.
    """

    def __init__(
        self,
        artifact: Artifact,
        device: str = "auto",
        max_batch: int = 256,
        threads: int = 0,
        exclude_seen: bool = True,
        new_rows: NewRowMix | None = DEFAULT_MIX,
    ) -> None:
        self.artifact = artifact
        self.new_rows = new_rows
        self.new_temperature = (new_rows or DEFAULT_MIX).temperature_for(artifact.manifest)
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
        reads_behaviour = all(name in names_in for name in BEHAVIOUR_INPUTS)
        # versions exported before the mixture lack these inputs: they rank new rows by their raw scores
        self._graph_mixes = all(name in names_in for name in NEW_ROW_INPUTS)
        optional = (NEW_ROW_INPUTS if self._graph_mixes else ()) + (BEHAVIOUR_INPUTS if reads_behaviour else ())
        expected = INPUTS + optional
        if sorted(names_in) != sorted(expected) or sorted(names_out) != sorted(OUTPUTS):
            raise ArtifactError(
                f"{artifact.onnx_path} has inputs {names_in} and outputs {names_out}; "
                f"expected {INPUTS} (and optionally {NEW_ROW_INPUTS} and {BEHAVIOUR_INPUTS}) and {OUTPUTS} "
                "(docs/artifact.md): re-export the model"
            )
        # versions exported before 2026-12-04 always return the manifest's top_k items
        self._takes_k = LIST_LENGTH_INPUT in {i.name for i in self.session.get_overridable_initializers()}
        self.behaviours = Behaviours.from_manifest(artifact.manifest.get("behaviour")) if reads_behaviour else None
        if reads_behaviour and self.behaviours is None:
            raise ArtifactError(
                f"{artifact.onnx_path} reads event types and scenarios but {artifact.path / 'manifest.json'} has no "
                "'behaviour' vocabularies: re-export the model with this streamrec version"
            )
        self.device = "cuda" if CUDA in self.session.get_providers() else "cpu"
        self.max_len = artifact.max_len
        self.max_batch = max_batch
        unk_id = int(artifact.manifest["unk_id"])
        self._unk_id = unk_id
        n_rows, dim = artifact.item_emb.shape
        # Spare rows for items added while serving; growing past them reallocates (old snapshots keep theirs).
        self._buffer = np.zeros((n_rows + max(1024, n_rows // 4), dim), dtype=np.float32)
        self._buffer[:n_rows] = artifact.item_emb
        bias = np.zeros(n_rows, dtype=np.float32)
        bias[[int(artifact.manifest["pad_id"]), unk_id]] = -np.inf
        self._seen_penalty = np.array([-np.inf if exclude_seen else 0.0], dtype=np.float32)
        self._seq = np.zeros(max_batch * self.max_len, dtype=np.int64)
        # versions exported before 2026-12-04 take [batch, max_len] sequences; later ones any length up to it
        item_seq = next(i for i in self.session.get_inputs() if i.name == "item_seq")
        self.crops = not isinstance(item_seq.shape[1], int)
        self._grow = threading.Lock()
        vocab = {item: index for index, item in enumerate(artifact.item_ids) if index >= 2}
        self.trained_rows = n_rows
        self.rows = self._snapshot(tuple(artifact.item_ids), vocab, n_rows, bias)
        logger.info(
            "model %s loaded on %s (providers %s): %d items, max_len %d, top_k %d",
            self.version,
            self.device,
            self.session.get_providers(),
            len(vocab),
            self.max_len,
            artifact.top_k,
        )

    def _snapshot(self, names: tuple[str, ...], vocab: dict[str, int], n_rows: int, bias: np.ndarray) -> ItemRows:
        emb = self._buffer[:n_rows]
        item_new = np.zeros(n_rows, dtype=np.float32)
        if self.new_rows is not None:
            item_new[self.trained_rows :] = 1.0  # else every row ranks by its raw score
        device = {}
        if self.device == "cuda":
            arrays = [("item_emb", emb), ("item_bias", bias), ("seen_penalty", self._seen_penalty)]
            if self._graph_mixes:
                arrays.append(("item_new", item_new))
            for name, array in arrays:
                device[name] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), "cuda", 0)
        return ItemRows(self.version, names, vocab, emb, bias, device, item_new)

    def new_mix(self, rows: ItemRows | None = None) -> np.ndarray:
        """``[share, temperature, mass]`` with which ``rows``' new items compete (share 0: none, or no mixture)."""
        rows = rows or self.rows
        new = len(rows) - self.trained_rows if self.new_rows is not None and self._graph_mixes else 0
        return (self.new_rows or DEFAULT_MIX).feed(len(rows) - 2, new, self.new_temperature)

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def vocab(self) -> dict[str, int]:
        return self.rows.vocab

    @property
    def item_bias(self) -> np.ndarray:
        """The model's own bias row (pad and unknown -inf); a call's ``item_bias`` replaces it."""
        return self.rows.item_bias

    @property
    def capacity(self) -> int:
        """Rows the item matrix holds before it grows."""
        return self._buffer.shape[0]

    def add_items(self, item_ids: Sequence[str], emb: np.ndarray) -> int:
        """Make ``item_ids`` recommendable with the rows ``emb`` (float32 [n, dim]), from the next batch on.

        Items the engine has already are skipped. Thread-safe; returns how many were added.
        """
        with self._grow:
            rows = self.rows
            fresh = {}
            for index, item in enumerate(item_ids):
                if item and item not in rows.vocab and item not in fresh:
                    fresh[item] = index
            if not fresh:
                return 0
            n, m = len(rows), len(fresh)
            if n + m > self._buffer.shape[0]:
                grown = np.zeros((max(2 * self._buffer.shape[0], n + m), self._buffer.shape[1]), dtype=np.float32)
                grown[:n] = self._buffer[:n]
                self._buffer = grown  # snapshots in flight keep the old buffer
                logger.info("model %s: item matrix grown to %d rows", self.version, grown.shape[0])
            self._buffer[n : n + m] = np.asarray(emb, dtype=np.float32)[list(fresh.values())]
            vocab = dict(rows.vocab)
            vocab.update((item, n + offset) for offset, item in enumerate(fresh))
            bias = np.concatenate([rows.item_bias, np.zeros(m, dtype=np.float32)])
            self.rows = self._snapshot(rows.names + tuple(fresh), vocab, n + m, bias)
            return m

    def encode(self, sequences: Sequence[Sequence[str]], rows: ItemRows | None = None) -> np.ndarray:
        """External item sequences to a left-padded int64 batch ``[B, L]``; unknown items map to ``unk_id``.

        ``L`` is ``max_len``, or, for a graph that takes any length, the batch's longest sequence (at most
        ``max_len``): the newest item sits in the last column either way, so dropping columns that are padding in
        every row changes no score, and the model's cost grows with ``L`` (short histories cost less).
        """
        batch, length = len(sequences), self.max_len
        if self.crops:
            length = max(1, min(length, max((len(items) for items in sequences), default=1)))
        if batch <= self.max_batch:
            seq = self._seq[: batch * length].reshape(batch, length)
            seq.fill(0)
        else:
            seq = np.zeros((batch, length), np.int64)
        vocab_get, unk = (rows or self.rows).vocab.get, self._unk_id
        for row, items in enumerate(sequences):
            tail = items[-length:]
            if tail:
                seq[row, length - len(tail) :] = [vocab_get(item, unk) for item in tail]
        return seq

    def encode_behaviour(self, item_seq: np.ndarray, behaviours: Sequence[Behaviour] | None = None) -> np.ndarray:
        """The ``[2, B, L]`` event-type and scenario ids beside ``item_seq`` (a model that reads behaviour).

        ``behaviours[row]`` is ``(event types, scenarios)`` of the row's items, oldest first; a position without
        one (state kept before sequences had it, or ``behaviours`` None) is "other".
        """
        assert self.behaviours is not None
        known = item_seq != PAD
        steps = np.repeat(np.where(known, OTHER, PAD)[None], 2, axis=0)  # [2, B, L]
        if behaviours is not None:
            for row, (types, scenarios) in enumerate(behaviours):
                self.behaviours.fill(steps, row, types, scenarios)
            steps[:, ~known] = PAD
        return steps

    def score(
        self,
        item_seq: np.ndarray,
        item_bias: np.ndarray | None = None,
        rows: ItemRows | None = None,
        behaviour: np.ndarray | None = None,
        k: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One onnxruntime call: top scores [B, k] and internal ids [B, k] (``k`` default and at most the model's
        ``top_k``; a version exported before the graph took ``k`` returns ``top_k`` columns whatever ``k`` is).

        ``item_bias`` replaces the model's bias row for this call (-inf removes an item from every list).
        ``behaviour``: the ``[2, B, L]`` ids of :meth:`encode_behaviour` (a model that reads behaviour; default
        "other" at every position).
        """
        rows = rows or self.rows
        extra: dict[str, np.ndarray] = {}
        if self.behaviours is not None:
            steps = self.encode_behaviour(item_seq) if behaviour is None else behaviour
            extra = {BEHAVIOUR_INPUTS[0]: steps[0], BEHAVIOUR_INPUTS[1]: steps[1]}
        if self._takes_k:
            extra[LIST_LENGTH_INPUT] = np.array([k or self.artifact.top_k], dtype=np.int64)
        if self._graph_mixes:
            extra["new_mix"] = self.new_mix(rows)
            if self.device != "cuda":
                extra["item_new"] = rows.item_new
        if self.device == "cuda":
            binding = self.session.io_binding()
            binding.bind_cpu_input("item_seq", item_seq)
            for name, value in extra.items():
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
            for name, value in rows.device.items():
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
                    "item_emb": rows.emb,
                    "item_bias": rows.item_bias if item_bias is None else item_bias,
                    "seen_penalty": self._seen_penalty,
                    **extra,
                },
            )
        return scores, ids

    def because(self, item_seq: np.ndarray, ids: np.ndarray, rows: ItemRows | None = None) -> np.ndarray:
        """For each recommended item, the history position whose embedding agrees with it most (-1: none)."""
        emb = (rows or self.rows).emb
        sims = np.matmul(emb[ids], emb[item_seq].transpose(0, 2, 1))  # [B, k, L]
        known = (item_seq >= 2)[:, None, :]  # [B, 1, L]
        sims = np.where(known, sims, -np.inf)
        best = sims.argmax(axis=2)  # [B, k]
        return np.where(known.any(axis=2), best, -1)

    def recommend(
        self,
        sequences: Sequence[Sequence[str]],
        k: int,
        item_bias: np.ndarray | Callable[[ItemRows], np.ndarray] | None = None,
        behaviours: Sequence[Behaviour] | None = None,
    ) -> list[list[ScoredItem]]:
        """Top-``k`` items for each sequence: one model call per ``max_batch`` sequences, or a few by history length
        (:func:`serving.widths.split_by_width`).

        ``item_bias`` (see :meth:`score`) may be a function of the item rows the call is scored against (the
        rows as of the call: items added meanwhile wait for the next one). ``behaviours``: each sequence's
        ``(event types, scenarios)`` (see :meth:`encode_behaviour`), read by a model that reads behaviour.
        """
        if k > self.artifact.top_k:
            raise ValueError(f"k={k} is larger than the model's top_k={self.artifact.top_k}")
        rows = self.rows
        bias = item_bias(rows) if callable(item_bias) else item_bias
        results: list[list[ScoredItem]] = []
        for start in range(0, len(sequences), self.max_batch):
            chunk = sequences[start : start + self.max_batch]
            steps = behaviours[start : start + self.max_batch] if behaviours is not None else None
            groups = self._groups(chunk)
            if len(groups) == 1:
                results.extend(self._call(chunk, rows, bias, steps, k))
                continue
            lists: list[list[ScoredItem]] = [[] for _ in chunk]  # calls by history length (serving/widths.py)
            for group in groups:
                part = [chunk[i] for i in group]
                part_steps = [steps[i] for i in group] if steps is not None else None
                for i, items in zip(group.tolist(), self._call(part, rows, bias, part_steps, k)):
                    lists[i] = items
            results.extend(lists)
        return results

    def _groups(self, chunk: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """The rows of each model call for ``chunk`` (one group: one call for all, in order)."""
        if not self.crops or len(chunk) < 2:
            return [np.arange(len(chunk))]
        lengths = np.fromiter((len(items) for items in chunk), dtype=np.int64, count=len(chunk))
        return split_by_width(np.minimum(lengths, self.max_len))

    def _call(
        self,
        sequences: Sequence[Sequence[str]],
        rows: ItemRows,
        bias: np.ndarray | None,
        behaviours: Sequence[Behaviour] | None,
        k: int,
    ) -> list[list[ScoredItem]]:
        """One model call for at most ``max_batch`` sequences: their lists."""
        item_seq = self.encode(sequences, rows)
        steps = None
        if self.behaviours is not None and behaviours is not None:
            steps = self.encode_behaviour(item_seq, behaviours)
        scores, ids = self.score(item_seq, bias, rows, steps, k)
        scores, ids = scores[:, :k], ids[:, :k]
        return _lists(rows.names, item_seq, scores, ids, self.because(item_seq, ids, rows))

    def warmup(self) -> None:
        """Run a full batch and a single sequence once, so the first real call is not slow."""
        some = [self.artifact.item_ids[2]] if len(self.artifact.item_ids) > 2 else []
        self.recommend([some * self.max_len] * self.max_batch, 1)
        self.recommend([some], 1)


def _lists(
    names: Sequence[str], item_seq: np.ndarray, scores: np.ndarray, ids: np.ndarray, support: np.ndarray
) -> list[list[ScoredItem]]:
    """Each row's items up to its first non-finite score (a row's scores are sorted), with the history item at
    the row's support position (-1: none).

    Converted to Python a whole array at a time: element by element (a numpy scalar read, ``float`` and
    ``np.isfinite`` per item) this took twice as long as the model call for a batch of 256 users, all of it
    holding the GIL the event loop needs.
    """
    finite = np.isfinite(scores)
    lengths = np.where(finite.all(axis=1), scores.shape[1], finite.argmin(axis=1)).tolist()
    supporting = np.take_along_axis(item_seq, np.maximum(support, 0), axis=1).tolist()
    out = []
    for length, row_ids, row_scores, row_support, row_positions in zip(
        lengths, ids.tolist(), scores.tolist(), supporting, support.tolist()
    ):
        out.append(
            [
                ScoredItem(names[item], score, names[history] if position >= 0 else None)
                for item, score, history, position in zip(
                    row_ids[:length], row_scores[:length], row_support[:length], row_positions[:length]
                )
            ]
        )
    return out

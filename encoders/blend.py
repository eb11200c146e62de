"""Co-occurrence blended into the model's scores, with a weight chosen on validation.

On sparse logs with large catalogs (a few events per user and per item) item-to-item co-occurrence can beat
SASRec: an item seen a handful of times gets a poor embedding, while "people who took a then took b" needs a
single observation. The exported graph therefore scores ``logit + weight * log(1 + c)``, where ``c`` is the
co-occurrence score of :class:`encoders.baselines.CoOccurrence` (the ``n_last`` newest history items, each
weighted ``1 / (j + 1)``) restricted to each item's ``K`` strongest followers: as probabilities, the model's
softmax times ``(1 + c) ** weight``. ``weight`` is chosen on the validation users from :data:`WEIGHTS` (0, the
model alone, when nothing beats it), with the followers counted on the training sequences only; the exported
followers are counted on everything before the test targets, as for the baseline.

The followers are constants of the graph (``model.onnx``), sized by the trained rows: rows added while serving
(new items, from their text) have no followers and are nobody's follower, so they get no term.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from encoders.baselines import CoOccurrence
from encoders.evaluate import ScoreFn, metrics_from_ranks, scored_batches, target_ranks
from encoders.split import EvalSet, left_pad

logger = logging.getLogger(__name__)

N_FOLLOWERS = 32
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


@dataclass(frozen=True)
class Followers:
    """Each trained row's ``K`` strongest co-occurrence followers (row 0 and rows without any: weight 0)."""

    index: np.ndarray  # int32 [n_rows, K]
    weight: np.ndarray  # float32 [n_rows, K]
    n_last: int

    @classmethod
    def fit(
        cls, sequences: Sequence[np.ndarray], n_rows: int, k: int = N_FOLLOWERS, window: int = 3, n_last: int = 5
    ) -> Followers:
        """Counts followers on ``sequences`` as :class:`CoOccurrence` does and keeps each row's ``k`` strongest."""
        co = CoOccurrence(sequences, n_rows, window=window, n_last=n_last)
        index = np.zeros((n_rows, k), dtype=np.int32)
        weight = np.zeros((n_rows, k), dtype=np.float32)
        counts = np.diff(co.indptr)
        for row in np.flatnonzero(counts):
            lo, hi = co.indptr[row], co.indptr[row + 1]
            cols, vals = co.cols[lo:hi], co.vals[lo:hi]
            if len(vals) > k:
                keep = np.argpartition(-vals, k - 1)[:k]
                cols, vals = cols[keep], vals[keep]
            index[row, : len(cols)] = cols
            weight[row, : len(vals)] = vals
        return cls(index, weight, n_last)

    @property
    def n_rows(self) -> int:
        return int(self.index.shape[0])


class BlendTerm(nn.Module):
    """``weight * log(1 + c)`` in torch, for the exported graph and the training code's scorer.

    Args:
        followers: the rows' followers.
        weight: the blend weight (> 0).
        max_len: the graph's sequence length (the newest ``min(n_last, max_len)`` positions are read).
    """

    def __init__(self, followers: Followers, weight: float, max_len: int) -> None:
        super().__init__()
        n_last = min(followers.n_last, max_len)
        self.n_last = n_last
        self.n_rows = followers.n_rows
        self.weight = float(weight)
        self.register_buffer("index", torch.from_numpy(followers.index))  # int32: half the graph's constant
        self.register_buffer("follow", torch.from_numpy(followers.weight))
        position = 1.0 / torch.arange(n_last, 0, -1, dtype=torch.float32)  # newest (last) position: 1
        self.register_buffer("position", position[None, :, None])  # [1, n, 1]

    def forward(self, item_seq: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The term ``[B, N]`` for ``item_seq`` ``[B, L]`` beside ``scores`` ``[B, N]`` (N >= the trained rows)."""
        index, follow = self.followers(item_seq)
        counts = torch.zeros_like(scores).scatter_add(1, index, follow)  # [B, N]
        return self.weight * torch.log1p(counts)

    def blended(self, item_seq: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``scores + forward(item_seq, scores)``, the same values, with the logarithm and the sum computed only at
        the newest items' followers (the term is 0 everywhere else): what the exported graph runs per batch."""
        return self.add_at(scores, *self.followers(item_seq))

    def add_at(self, scores: torch.Tensor, index: torch.Tensor, follow: torch.Tensor) -> torch.Tensor:
        """:meth:`blended` from :meth:`followers`' arrays (the graph looks them up once, outside its branches)."""
        counts = torch.zeros_like(scores).scatter_add(1, index, follow).gather(1, index)  # [B, n * K]
        return scores.scatter(1, index, scores.gather(1, index) + self.weight * torch.log1p(counts))  # [B, N]

    def followers(self, item_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows ``[B, n * K]`` (int64) and weights ``[B, n * K]`` of the newest ``n_last`` items' followers."""
        # left-padded to n_last first: a caller may crop the sequences' leading padding below n_last (pad rows
        # have no followers)
        last = nn.functional.pad(item_seq, (self.n_last, 0))[:, -self.n_last :]  # [B, n]
        last = torch.where(last < self.n_rows, last, torch.zeros_like(last))  # rows added while serving: none
        index = self.index[last].flatten(1).long()  # [B, n * K]
        follow = (self.follow[last] * self.position).flatten(1)  # [B, n * K]
        return index, follow


@dataclass(frozen=True)
class Blend:
    """What a model version blends in: the followers and the weight chosen on validation."""

    followers: Followers
    weight: float

    def module(self, max_len: int) -> BlendTerm:
        return BlendTerm(self.followers, self.weight, max_len)

    def to_manifest(self) -> dict[str, Any]:
        return {"weight": self.weight, "followers": int(self.followers.index.shape[1]), "n_last": self.followers.n_last}

    def state(self) -> dict[str, Any]:
        """For a checkpoint (``torch.load(weights_only=True)`` reads tensors and plain values)."""
        return {
            "index": torch.from_numpy(self.followers.index),
            "follow": torch.from_numpy(self.followers.weight),
            "n_last": self.followers.n_last,
            "weight": self.weight,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Blend | None:
        if not state:
            return None
        followers = Followers(state["index"].numpy(), state["follow"].numpy(), int(state["n_last"]))
        return cls(followers, float(state["weight"]))


def blended_scorer(score_fn: ScoreFn, blend: BlendTerm | None) -> ScoreFn:
    """``score_fn`` with the blend term added (the same function when ``blend`` is None)."""
    if blend is None:
        return score_fn

    def score(histories: list[np.ndarray], behaviour: list[np.ndarray] | None = None) -> np.ndarray:
        base = score_fn(histories) if behaviour is None else score_fn(histories, behaviour)
        return base + _term(blend, histories, base)

    return score


def _term(blend: BlendTerm, histories: Sequence[np.ndarray], scores: np.ndarray) -> np.ndarray:
    """``blend``'s term ``[B, N]`` for histories of internal ids (oldest first) beside ``scores`` ``[B, N]``."""
    seq = torch.from_numpy(left_pad(list(histories), blend.n_last))
    with torch.no_grad():
        return blend(seq, torch.from_numpy(scores)).numpy()


def choose_weight(
    score_fn: ScoreFn,
    followers: Followers,
    valid: EvalSet,
    weights: Sequence[float] = WEIGHTS,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, Any]:
    """The blend weight with the best validation NDCG@10 (ties: the smaller weight).

    Args:
        score_fn: the model's scorer (as in :func:`encoders.evaluate.scorer_ranks`).
        followers: counted on the training sequences only (the validation targets unseen).
        valid: the validation users.
        progress: show a tqdm bar (a minute for 40,000 users and 47,000 items on one core).

    Returns:
        ``{"weight", "valid_ndcg10": {weight: NDCG@10}}`` for the manifest.
    """
    ranks: dict[float, list[np.ndarray]] = {w: [] for w in weights}
    unit = BlendTerm(followers, 1.0, followers.n_last)  # the graph's own term, weight 1
    batches = scored_batches(score_fn, valid, batch_size)
    total = -(-len(valid) // batch_size)
    for hist, targets, base in tqdm(
        batches, total=total, desc="co-occurrence blend", unit="batch", disable=not progress, leave=False
    ):
        term = _term(unit, hist, base)
        for w in weights:
            ranks[w].append(target_ranks(base + w * term if w else base, targets, hist))
    ndcg = {w: metrics_from_ranks(np.concatenate(r) if r else np.zeros(0))["ndcg@10"] for w, r in ranks.items()}
    best = max(weights, key=lambda w: (round(ndcg[w], 6), -w))
    logger.info(
        "co-occurrence blend: validation NDCG@10 %s; weight %s",
        ", ".join(f"{w:g}: {v:.4f}" for w, v in ndcg.items()),
        f"{best:g}",
    )
    return {"weight": float(best), "valid_ndcg10": {f"{w:g}": round(v, 6) for w, v in ndcg.items()}}

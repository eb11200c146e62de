"""Full-ranking, seen-excluded evaluation: NDCG@10, Recall@10 (= HR@10), MRR."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch

from encoders.baselines import CoOccurrence, Popularity
from encoders.config import FIRST_ITEM_ID
from encoders.sasrec import SASRec
from encoders.split import EvalSet, Split, left_pad

logger = logging.getLogger(__name__)

SPLIT_NAME = "leave-last-out, full ranking, seen excluded"
ScoreFn = Callable[..., np.ndarray]  # (histories[, behaviour]) -> [B, N] scores; see evaluate_scorer


def metrics_from_ranks(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """Ranking metrics from 0-based ranks of the targets (``inf`` = never ranked).

    Returns:
        ``{"ndcg@k", "recall@k", "mrr"}`` averaged over users (0.0 for no users).
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        return {f"ndcg@{k}": 0.0, f"recall@{k}": 0.0, "mrr": 0.0}
    hit = ranks < k
    ndcg = np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0)
    return {
        f"ndcg@{k}": float(ndcg.mean()),
        f"recall@{k}": float(hit.mean()),
        "mrr": float((1.0 / (ranks + 1.0)).mean()),
    }


def target_ranks(scores: np.ndarray, targets: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """0-based rank of each target among all catalog items, seen items excluded.

    Pad and unknown rows and every item of the history are removed from the ranking (a target
    the user has already seen is therefore a miss, ``inf``, exactly as in serving). Ties count
    against the target (pessimistic), so constant scores earn no credit.

    Args:
        scores: ``[B, N]`` scores.
        targets: ``[B]`` internal ids.
        histories: the ``B`` histories whose items are excluded.
    """
    scores = np.array(scores, dtype=np.float32)  # copy
    scores[:, :FIRST_ITEM_ID] = -np.inf
    for b, hist in enumerate(histories):
        scores[b, np.asarray(hist, dtype=np.int64)] = -np.inf
    rows = np.arange(len(targets))
    t = scores[rows, targets][:, None]  # [B, 1]
    ahead = (scores > t).sum(1) + (scores == t).sum(1) - 1  # [B]
    return np.where(np.isfinite(t[:, 0]), ahead, np.inf)


def scored_batches(
    score_fn: ScoreFn, eval_set: EvalSet, batch_size: int = 256
) -> Iterator[tuple[list[np.ndarray], np.ndarray, np.ndarray]]:
    """``(histories, targets, scores [B, N])`` per batch of ``eval_set``; when the set has behaviour, the scorer is
    called as ``score_fn(histories, behaviour)`` (baselines ignore it)."""
    behaviour = eval_set.behaviour
    for start in range(0, len(eval_set), batch_size):
        hist = list(eval_set.histories[start : start + batch_size])
        if behaviour is None:
            scores = score_fn(hist)
        else:
            scores = score_fn(hist, list(behaviour[start : start + batch_size]))
        yield hist, eval_set.targets[start : start + batch_size], scores


def scorer_ranks(score_fn: ScoreFn, eval_set: EvalSet, batch_size: int = 256) -> np.ndarray:
    """0-based rank of each target (``inf``: excluded) under a scorer ``histories -> [B, N] scores`` (see
    :func:`scored_batches`)."""
    ranks = [
        target_ranks(scores, targets, hist) for hist, targets, scores in scored_batches(score_fn, eval_set, batch_size)
    ]
    return np.concatenate(ranks) if ranks else np.zeros(0)


def evaluate_scorer(score_fn: ScoreFn, eval_set: EvalSet, k: int = 10, batch_size: int = 256) -> dict[str, float]:
    """Evaluates a scorer on an evaluation set (see :func:`scorer_ranks`)."""
    return metrics_from_ranks(scorer_ranks(score_fn, eval_set, batch_size), k)


def model_scorer(model: SASRec, device: torch.device | str = "cpu") -> ScoreFn:
    """Wraps a SASRec model (eval mode, no grad) as a scorer; behaviour ids are used when the model reads them."""

    def score(histories: list[np.ndarray], behaviour: list[np.ndarray] | None = None) -> np.ndarray:
        was_training = model.training
        model.eval()
        max_len = model.config.max_len
        with torch.no_grad():
            seq = torch.from_numpy(left_pad(histories, max_len)).to(device)
            steps = None
            if behaviour is not None and model.config.n_types:
                steps = torch.from_numpy(left_pad(behaviour, max_len)).to(device)  # [B, L, 2]
            out = model.score_last(seq, behaviour=steps).float().cpu().numpy()
        model.train(was_training)
        return out

    return score


def evaluate_baselines(split: Split, n_rows: int, which: str = "test") -> dict[str, dict]:
    """Popularity and co-occurrence metrics, fitted on what precedes the evaluated targets."""
    fit = split.train_valid if which == "test" else split.train
    eval_set = split.test if which == "test" else split.valid
    out = {}
    for baseline in (Popularity(fit, n_rows), CoOccurrence(fit, n_rows)):
        out[baseline.name] = evaluate_scorer(baseline.score, eval_set)
    return out


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A small fixed-width table of ``{model: {metric: value}}``."""
    names = list(next(iter(metrics.values())).keys()) if metrics else []
    w = max([14, *(len(m) + 1 for m in metrics)])
    lines = [f"{'model':<{w}}" + "".join(f"{n:>11}" for n in names)]
    for model, m in metrics.items():
        lines.append(f"{model:<{w}}" + "".join(f"{m.get(n, float('nan')):>11.4f}" for n in names))
    return "\n".join(lines)

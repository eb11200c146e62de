"""A tiny SASRec trained on the simulated log: the shared set-up of the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from encoders.config import ModelConfig, TrainConfig
from encoders.pipeline import DataSource, TrainOutcome, prepare
from encoders.train import TrainResult, build_model, seed_everything, train_model


def train_tiny(sim_dir: Path, tcfg: TrainConfig, seed: int = 0, dropout: float = 0.2) -> TrainResult:
    """Trains a 1-layer, dim-16, max_len-10 model on ``sim_dir/events.jsonl`` (ids only)."""
    data = DataSource(events=sim_dir / "events.jsonl").load()
    vocab, split = prepare(data, use_text=False)
    cfg = ModelConfig(n_rows=vocab.n_rows, max_len=10, dim=16, n_layers=1, dropout=dropout)
    seed_everything(seed)
    return train_model(build_model(cfg, split.train, None), split, tcfg, progress=False)


def exported_scores(
    outcome: TrainOutcome, seq: torch.Tensor, behaviour: torch.Tensor | None = None, exclude_seen: bool = True
) -> np.ndarray:
    """``[B, N]`` scores as the exported graph ranks them on the trained catalog: the model's, pad and unknown
    (and the items of ``seq`` when ``exclude_seen``) at -inf; with a co-occurrence blend (encoders.blend) the
    trained rows take the model's own values, best first, in the blended order."""
    model = outcome.result.model.cpu().eval()
    with torch.no_grad():
        scores = model.score_last(seq, behaviour=behaviour)
        term = outcome.blend.module(seq.shape[1])(seq, scores).numpy() if outcome.blend is not None else None
    scores = scores.numpy()
    scores[:, :2] = -np.inf
    if exclude_seen:
        for row, items in enumerate(seq.numpy()):
            scores[row, items] = -np.inf
    if term is None:
        return scores
    return in_blended_order(scores, scores + term, np.zeros(scores.shape[1], dtype=bool))


def in_blended_order(values: np.ndarray, blended: np.ndarray, is_new: np.ndarray) -> np.ndarray:
    """``values`` with each row's trained values handed out, best first, in the order of ``blended``."""
    out = values.copy()
    for row in range(len(values)):
        rows = np.flatnonzero(~is_new & np.isfinite(blended[row]))
        order = rows[np.argsort(-blended[row, rows], kind="stable")]
        out[row, order] = np.sort(values[row, rows])[::-1]
    return out

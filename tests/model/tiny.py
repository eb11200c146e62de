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


def exported_scores(outcome: TrainOutcome, seq: torch.Tensor, behaviour: torch.Tensor | None = None) -> np.ndarray:
    """``[B, N]`` scores the exported graph ranks before masking: the model's, plus the co-occurrence blended in
    when validation chose one (encoders.blend)."""
    model = outcome.result.model.cpu().eval()
    with torch.no_grad():
        scores = model.score_last(seq, behaviour=behaviour)
        if outcome.blend is not None:
            scores = scores + outcome.blend.module(seq.shape[1])(seq, scores)
    return scores.numpy()

"""Defaults that adapt to the data's density (encoders.recipe) and the final fit on the validation targets."""

from __future__ import annotations

import json

import numpy as np

from encoders.config import ModelConfig, TrainConfig
from encoders.pipeline import DataSource, train_and_export
from encoders.recipe import ADAPTIVE, adapt, density
from encoders.split import leave_last_out


def _split(lengths):
    rng = np.random.default_rng(0)
    return leave_last_out([rng.integers(2, 50, size=n) for n in lengths])


def test_short_histories_are_sparse_and_get_the_sparse_recipe_only_where_unset():
    sparse, dense = _split([8] * 100), _split([60] * 100)
    assert density(sparse).valid_share == 100 / (100 * 5) and density(sparse).sparse  # 5 targets per user
    assert not density(dense).sparse
    model, train, summary = adapt(ModelConfig(), TrainConfig(), sparse, ADAPTIVE)
    assert (model.dropout, train.ema_decay, train.refit) == (0.5, 0.99, True) and summary["sparse"]
    # a value given on the command line is kept
    model, train, _ = adapt(ModelConfig(dropout=0.1), TrainConfig(), sparse, ADAPTIVE - {"dropout"})
    assert (model.dropout, train.ema_decay) == (0.1, 0.99)
    model, train, summary = adapt(ModelConfig(), TrainConfig(refit=True), dense, ADAPTIVE - {"refit"})
    assert (model.dropout, train.ema_decay, train.refit) == (0.2, 0.0, True) and not summary["sparse"]


def test_on_sparse_data_the_exported_model_is_fitted_again_on_the_validation_targets(tmp_path):
    rng = np.random.default_rng(1)
    lines = []
    for user in range(150):  # short histories that follow a chain: 7 events each
        start = int(rng.integers(0, 40))
        lines += [
            json.dumps({"user_id": f"u{user}", "item_id": f"i{start + k}", "event_type": "click", "ts": k})
            for k in range(7)
        ]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    outcome = train_and_export(
        DataSource(events=tmp_path / "events.jsonl"),
        ModelConfig(max_len=10, dim=16, n_layers=1),
        TrainConfig(epochs=6, patience=3, device="cpu", seed=2, top_k=10),
        tmp_path / "models",
        progress=False,
        adaptive=ADAPTIVE,
    )
    training = outcome.training
    assert training["recipe"]["sparse"] and training["recipe"]["chosen"]["refit"] is True
    assert training["refit_epochs"] == training["best_epoch"] > 0
    assert outcome.result.epochs_run == training["best_epoch"]  # the exported model is the refit one
    manifest = json.loads((outcome.version_dir / "manifest.json").read_text())
    assert manifest["training"]["recipe"]["chosen"]["dropout"] == 0.5 and manifest["config"]["dropout"] == 0.5
    assert manifest["config"]["refit"] is True

"""Moving average of the weights: the update rule, the swap in and out, its use in training."""

from __future__ import annotations

import torch

from encoders.averaging import WeightAverage
from encoders.config import ModelConfig, TrainConfig
from encoders.pipeline import DataSource, prepare
from encoders.train import build_model, seed_everything, train_model


def test_average_follows_the_weights_and_swaps_in_only_inside_the_block():
    layer = torch.nn.Linear(3, 2)
    start = layer.weight.detach().clone()
    avg = WeightAverage(layer, decay=0.75)
    with torch.no_grad():
        layer.weight.add_(4.0)
    avg.update()
    expected = start + 0.25 * 4.0
    with avg.applied():
        torch.testing.assert_close(layer.weight.detach(), expected)
    torch.testing.assert_close(layer.weight.detach(), start + 4.0)
    avg.reset()
    with avg.applied():
        torch.testing.assert_close(layer.weight.detach(), start + 4.0)


def test_training_keeps_the_validated_average(sim_dir):
    data = DataSource(events=sim_dir / "events.jsonl").load()
    vocab, split = prepare(data, use_text=False)
    cfg = ModelConfig(n_rows=vocab.n_rows, max_len=10, dim=16, n_layers=1)
    runs = []
    for decay in (0.0, 0.9):
        seed_everything(0)
        model = build_model(cfg, split.train, None)
        tcfg = TrainConfig(epochs=4, patience=10, ema_decay=decay, device="cpu")
        runs.append(train_model(model, split, tcfg, progress=False))
    raw, averaged = runs
    # same seed and steps, so only the validated (and kept) weights differ
    assert [h["loss"] for h in raw.history] == [h["loss"] for h in averaged.history]
    assert raw.best_valid != averaged.best_valid
    assert not torch.equal(raw.model.item_emb.weight, averaged.model.item_emb.weight)

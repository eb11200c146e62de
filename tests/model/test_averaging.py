"""Moving average of the weights: the update rule, the swap in and out, its use in training."""

from __future__ import annotations

import torch

from encoders.averaging import WeightAverage
from encoders.config import TrainConfig
from tests.model.tiny import train_tiny


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
    raw, averaged = (
        train_tiny(sim_dir, TrainConfig(epochs=4, patience=10, ema_decay=decay, device="cpu")) for decay in (0.0, 0.9)
    )
    # same seed and steps, so only the validated (and kept) weights differ
    assert [h["loss"] for h in raw.history] == [h["loss"] for h in averaged.history]
    assert raw.best_valid != averaged.best_valid
    assert not torch.equal(raw.model.item_emb.weight, averaged.model.item_emb.weight)

"""Exponential moving average of a model's weights, validated and kept instead of the raw ones."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class WeightAverage:
    """Keeps ``avg = decay * avg + (1 - decay) * weights`` after every optimizer step.

    Args:
        model: the model being trained; its parameters are averaged.
        decay: weight of the old average per step, in [0, 1); about ``1 / (1 - decay)`` recent
            steps dominate the average.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.reset()

    def reset(self) -> None:
        """Restarts the average at the current weights."""
        self.avg = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Moves the average towards the current weights (call after each optimizer step)."""
        torch._foreach_lerp_(self.avg, [p.detach() for p in self.params], 1.0 - self.decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Puts the averaged weights into the model for the ``with`` block, then the raw ones back."""
        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.avg)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, raw)

"""Defaults that adapt to the data: what ``streamrec train`` changes on sparse logs, chosen before training.

Measured on SASRec's ML-1M cut to each user's newest 10 events (docs/model.md, *Sparse data*): with the defaults
SASRec scored below co-occurrence; more dropout, weight averaging and a final fit that also learns from the
validation targets put it above. A log is sparse when its validation targets (one per user) are at least
``SPARSE_SHARE`` of its training targets, i.e. when users have few events: there the validation events are a
large share of the data, and the newest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from encoders.config import ModelConfig, TrainConfig
from encoders.split import Split

SPARSE_SHARE = 0.05
SPARSE = {"dropout": 0.5, "ema_decay": 0.99, "refit": True}
DENSE = {"refit": False}
ADAPTIVE = frozenset(SPARSE) | frozenset(DENSE)


@dataclass(frozen=True)
class Density:
    """Training targets (each event after a user's first, validation and test held out) and validation users."""

    train_targets: int
    valid_users: int

    @property
    def valid_share(self) -> float:
        return self.valid_users / max(self.train_targets, 1)

    @property
    def sparse(self) -> bool:
        return self.valid_share >= SPARSE_SHARE


def density(split: Split) -> Density:
    return Density(sum(max(len(s) - 1, 0) for s in split.train), len(split.valid))


def adapt(
    model_config: ModelConfig, train_config: TrainConfig, split: Split, adaptive: frozenset[str]
) -> tuple[ModelConfig, TrainConfig, dict[str, Any]]:
    """The configs with the settings in ``adaptive`` (those the user left unset) chosen for the data's density.

    Returns:
        The two configs and a summary for the manifest (``valid_share``, ``sparse``, the values chosen).
    """
    d = density(split)
    chosen = {k: v for k, v in (SPARSE if d.sparse else DENSE).items() if k in adaptive}
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    model_config = dataclasses.replace(model_config, **{k: v for k, v in chosen.items() if k in model_keys})
    train_config = dataclasses.replace(train_config, **{k: v for k, v in chosen.items() if k not in model_keys})
    summary = {"valid_share": round(d.valid_share, 4), "sparse": d.sparse, "chosen": chosen}
    return model_config, train_config, summary

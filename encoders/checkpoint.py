"""Training checkpoints (torch): weights, configs, vocabulary and results, for re-export."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from encoders.blend import Blend
from encoders.config import ModelConfig, TrainConfig
from encoders.sasrec import SASRec
from encoders.vocab import Vocabulary
from serving.behaviour import Behaviours

logger = logging.getLogger(__name__)


def default_checkpoint_dir(model_root: str | Path) -> Path:
    """``<model_root>-checkpoints`` beside the model root (never inside it, where every folder
    is read as a model version)."""
    root = Path(model_root).resolve()
    return root.parent / f"{root.name}-checkpoints"


@dataclass(frozen=True)
class Checkpoint:
    """A trained model with everything needed to export it again."""

    model: SASRec
    vocab: Vocabulary
    train_config: TrainConfig
    training: dict[str, Any]
    metrics: dict[str, Any]
    text_model: str | None
    behaviours: Behaviours | None = None
    blend: Blend | None = None


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Writes a checkpoint file (parent folders are created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model_config": ckpt.model.config.to_dict(),
            "train_config": ckpt.train_config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()},
            "item_ids": list(ckpt.vocab.item_ids),
            "titles": list(ckpt.vocab.titles),
            "training": ckpt.training,
            "metrics": ckpt.metrics,
            "text_model": ckpt.text_model,
            "behaviour": ckpt.behaviours.to_manifest() if ckpt.behaviours else None,
            "blend": ckpt.blend.state() if ckpt.blend else None,
        },
        p,
    )
    logger.info("saved checkpoint %s", p)
    return p


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Reads a checkpoint written by :func:`save_checkpoint` (model in eval mode, on CPU).

    Raises:
        FileNotFoundError: with a hint when the file does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Checkpoint {p} does not exist; 'train' writes one to <model root>-checkpoints/.")
    raw = torch.load(p, map_location="cpu", weights_only=True)
    model = SASRec(ModelConfig.from_dict(raw["model_config"]))
    model.load_state_dict(raw["state_dict"])
    model.eval()
    return Checkpoint(
        model=model,
        vocab=Vocabulary(tuple(raw["item_ids"]), tuple(raw["titles"])),
        train_config=TrainConfig.from_dict(raw["train_config"]),
        training=raw["training"],
        metrics=raw["metrics"],
        text_model=raw["text_model"],
        behaviours=Behaviours.from_manifest(raw.get("behaviour")),
        blend=Blend.from_state(raw.get("blend")),
    )

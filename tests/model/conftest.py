"""Shared fixtures: a tiny synthetic data set and models trained on it once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from encoders.config import ModelConfig, TrainConfig
from encoders.pipeline import DataSource, TextOptions, TrainOutcome, train_and_export
from streams.tools.simulate import simulate, write_dataset

# Cold-start items: in the catalog, never in any event. Their text matches a category.
COLD_ITEMS = [
    {
        "item_id": "cold-shoes",
        "title": "red trail sneakers",
        "category": "shoes",
        "text": "red trail sneakers, a sneakers from our shoes range",
        "available": True,
    },
    {
        "item_id": "cold-kitchen",
        "title": "copper kettle",
        "category": "kitchen",
        "text": "copper kettle, a kettle from our kitchen range",
        "available": True,
    },
]

TINY_MODEL = ModelConfig(max_len=20, dim=32, n_layers=1, n_heads=1, dropout=0.1)
TINY_TRAIN = TrainConfig(epochs=40, batch_size=32, lr=3e-3, patience=8, seed=1, device="cpu", top_k=20)


@pytest.fixture(scope="session")
def cold_items() -> list[dict]:
    """Catalog items that no event mentions (cold start)."""
    return COLD_ITEMS


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``events.jsonl`` + ``items.jsonl`` (with two cold-start items) of 160 simulated users."""
    out = tmp_path_factory.mktemp("sim")
    events, items = simulate(n_users=160, n_items=96, events_per_user=(15, 35), seed=3)
    write_dataset(out, events, items)
    with (out / "items.jsonl").open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(i) + "\n" for i in COLD_ITEMS)
    return out


def _train_tiny(sim_dir: Path, root: Path, text: bool, behaviour: bool | None = None) -> TrainOutcome:
    return train_and_export(
        DataSource(events=sim_dir / "events.jsonl", items=sim_dir / "items.jsonl"),
        TINY_MODEL,
        TINY_TRAIN,
        root / "models",
        text=TextOptions(enabled=text),
        progress=False,
        behaviour=behaviour,
    )


@pytest.fixture(scope="session")
def trained(sim_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainOutcome:
    """SASRec (ids only) trained on the simulated data and exported."""
    return _train_tiny(sim_dir, tmp_path_factory.mktemp("models"), text=False)


@pytest.fixture(scope="session")
def trained_items_only(sim_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainOutcome:
    """The same SASRec trained without behaviour (``--no-behaviour``): a version exported before models read it."""
    return _train_tiny(sim_dir, tmp_path_factory.mktemp("models_items"), text=False, behaviour=False)


@pytest.fixture(scope="session")
def trained_text(sim_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainOutcome:
    """SASRec with MiniLM item text fused into the item table, trained and exported."""
    return _train_tiny(sim_dir, tmp_path_factory.mktemp("models_text"), text=True)

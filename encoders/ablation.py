"""Behaviour ablation (``streamrec evaluate --behaviour-ablation``): the same SASRec, seeds and split with and
without event-type and scenario embeddings, overall and by the event type of the user's newest event."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from encoders.baselines import CoOccurrence
from encoders.config import ModelConfig, TrainConfig
from encoders.data import DataError
from encoders.evaluate import metrics_from_ranks, model_scorer, scorer_ranks
from encoders.pipeline import DataSource, behaviour_of, prepare
from encoders.train import build_model, seed_everything, train_model

logger = logging.getLogger(__name__)

VARIANTS = ("behaviour", "items only")


def behaviour_ablation(
    source: DataSource,
    model_config: ModelConfig,
    train_config: TrainConfig,
    seeds: tuple[int, ...],
    progress: bool = True,
) -> dict[str, Any]:
    """Trains both variants for every seed on one leave-last-out split and scores them on its test users.

    Returns:
        ``{"data", "runs": [{seed, variant, epochs, best_epoch, seconds, val_ndcg10, test: metrics,
        by_event_type: {type: metrics}}], "cooccurrence": {...}, "users_by_event_type": {type: n}}``; the event
        type is that of the newest event of the test history (the one the next item follows).
    """
    data = source.load()
    behaviours = behaviour_of(data, None)
    if behaviours is None or data.behaviour is None:
        raise DataError("--behaviour-ablation needs events that differ in event type or scenario (--events).")
    vocab, split = prepare(data, False, behaviours)
    last_type = np.array([user[-2][0] for user in data.behaviour if len(user) >= 3])
    kinds = sorted(set(last_type.tolist()))
    report: dict[str, Any] = {
        "data": {"source": data.source, "users": len(data.user_ids), "items": vocab.n_items, "events": data.n_events},
        "users_by_event_type": {kind: int((last_type == kind).sum()) for kind in kinds},
        "runs": [],
    }

    def summary(ranks: np.ndarray) -> dict[str, Any]:
        by_type = {kind: metrics_from_ranks(ranks[last_type == kind]) for kind in kinds}
        return {"test": metrics_from_ranks(ranks), "by_event_type": by_type}

    cooc = CoOccurrence(split.train_valid, vocab.n_rows)
    report["cooccurrence"] = summary(scorer_ranks(cooc.score, split.test))
    for seed in seeds:
        for variant in VARIANTS:
            reads = variant == VARIANTS[0]
            cfg = dataclasses.replace(
                model_config,
                n_rows=vocab.n_rows,
                n_types=behaviours.n_types if reads else 0,
                n_scenarios=behaviours.n_scenarios if reads else 0,
            )
            seed_everything(seed)
            result = train_model(
                build_model(cfg, split.train, None), split, dataclasses.replace(train_config, seed=seed), progress
            )
            ranks = scorer_ranks(model_scorer(result.model, result.device), split.test)
            run = {
                "seed": seed,
                "variant": variant,
                "epochs": result.epochs_run,
                "best_epoch": result.best_epoch,
                "seconds": round(result.seconds, 1),
                "val_ndcg10": result.best_valid.get("ndcg@10", 0.0),
                **summary(ranks),
            }
            logger.info("ablation %s seed %d: %s", variant, seed, run["test"])
            report["runs"].append(run)
    return report


def format_ablation(report: dict[str, Any]) -> str:
    """The report as a table: one line per run and the co-occurrence baseline, overall and by event type."""
    kinds = list(report["users_by_event_type"])
    head = f"{'variant':<12}{'seed':>5}{'epochs':>7}{'sec':>7}{'val ndcg':>9}{'ndcg@10':>9}{'rec@10':>8}"
    head += "".join(f"{'after ' + k:>18}" for k in kinds)
    counts = "  ".join(f"{k}: {n}" for k, n in report["users_by_event_type"].items())
    lines = [f"{report['data']['source']}: test users by the type of their newest event: {counts}", head]

    def line(name: str, seed: str, epochs: str, sec: str, val: str, row: dict[str, Any]) -> str:
        text = f"{name:<12}{seed:>5}{epochs:>7}{sec:>7}{val:>9}"
        text += f"{row['test']['ndcg@10']:>9.4f}{row['test']['recall@10']:>8.4f}"
        return text + "".join(f"{row['by_event_type'][k]['ndcg@10']:>18.4f}" for k in kinds)

    for run in report["runs"]:
        lines.append(
            line(
                run["variant"],
                str(run["seed"]),
                str(run["epochs"]),
                f"{run['seconds']:.0f}",
                f"{run['val_ndcg10']:.4f}",
                run,
            )
        )
    lines.append(line("cooccurrence", "-", "-", "-", "-", report["cooccurrence"]))
    lines.append("(by event type: NDCG@10 of the test users whose newest history event has that type)")
    return "\n".join(lines)

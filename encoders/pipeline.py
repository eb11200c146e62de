"""Workflows behind the CLI: train -> evaluate -> export, evaluate an artifact, re-export."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoders.blend import Blend, Followers, blended_scorer, choose_weight
from encoders.checkpoint import Checkpoint, default_checkpoint_dir, load_checkpoint, save_checkpoint
from encoders.config import FIRST_ITEM_ID, ModelConfig, TrainConfig
from encoders.data import (
    DataError,
    Interactions,
    load_events_jsonl,
    load_movielens_ratings,
    load_sasrec,
)
from encoders.evaluate import (
    SPLIT_NAME,
    evaluate_baselines,
    evaluate_scorer,
    metrics_from_ranks,
    model_scorer,
)
from encoders.export import write_artifact
from encoders.mixture_fit import fit_new_item_temperature
from encoders.recipe import adapt
from encoders.split import Split, leave_last_out, left_pad
from encoders.train import TrainResult, build_model, refit_model, resolve_device, seed_everything, train_model
from encoders.vocab import Vocabulary
from serving.behaviour import Behaviours

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    """Where interactions come from: exactly one of ``events``, ``sasrec`` or ``ratings``."""

    events: Path | None = None
    items: Path | None = None
    sasrec: Path | None = None
    sasrec_items_map: Path | None = None
    movies: Path | None = None
    ratings: Path | None = None

    def load(self) -> Interactions:
        """Loads the interactions (and item metadata when given).

        Raises:
            DataError: when no or several sources are given, or a file is missing or empty.
        """
        given = [n for n in ("events", "sasrec", "ratings") if getattr(self, n) is not None]
        if len(given) != 1:
            raise DataError("Give exactly one of --events, --sasrec or --ratings.")
        if self.events is not None:
            return load_events_jsonl(self.events, self.items)
        if self.sasrec is not None:
            return load_sasrec(self.sasrec, self.sasrec_items_map, self.movies)
        return load_movielens_ratings(self.ratings, self.movies)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TextOptions:
    """Item text embeddings: ``enabled`` None = on when the catalog has text."""

    enabled: bool | None = None
    model_path: Path | None = None
    batch_size: int = 64


@dataclass(frozen=True)
class TrainOutcome:
    """What ``train`` produced."""

    version_dir: Path
    checkpoint: Path
    metrics: dict[str, Any]
    result: TrainResult  # the exported model's run (the refit one when there was one)
    training: dict[str, Any]  # the manifest's summary
    blend: Blend | None = None  # the co-occurrence blended into the exported graph


def item_texts(data: Interactions, vocab: Vocabulary) -> list[str]:
    """Text of every vocabulary item (``title. category. text``; empty when unknown)."""
    return [data.items[i].full_text if i in data.items else "" for i in vocab.item_ids]


def _use_text(data: Interactions, opts: TextOptions) -> bool:
    has_text = any(info.full_text for info in data.items.values())
    if opts.enabled is None:
        return has_text
    if opts.enabled and not has_text:
        raise DataError(
            "--text needs item titles or texts: pass --items (events), --sasrec-items-map with "
            "--movies (SASRec) or --movies (ratings), or use --no-text."
        )
    return opts.enabled


def text_embeddings(texts: list[str], opts: TextOptions, device: str, progress: bool) -> tuple[np.ndarray, str]:
    """Embeds item texts into a ``[n_items + 2, text_dim]`` table (zero rows without text).

    Returns:
        The table and the text model's path (for the manifest).
    """
    from encoders.text import TextEncoder

    enc = TextEncoder(opts.model_path, device=device)
    table = np.zeros((len(texts) + FIRST_ITEM_ID, enc.dim), dtype=np.float32)
    which = [k for k, t in enumerate(texts) if t]
    if which:
        emb = enc.encode([texts[k] for k in which], batch_size=opts.batch_size, progress=progress)
        table[np.asarray(which) + FIRST_ITEM_ID] = emb
    return table, str(enc.path)


def behaviour_of(data: Interactions, enabled: bool | None) -> Behaviours | None:
    """The behaviour vocabularies the model reads: ``enabled`` None = when the events differ in event type or
    scenario; True without any behaviour in the data is an error."""
    if enabled is False or (enabled is None and not data.has_behaviour):
        return None
    if data.behaviour is None:
        raise DataError("--behaviour needs events with event types and scenarios (--events); drop it.")
    steps = [step for steps in data.behaviour for step in steps]
    return Behaviours.build((t for t, _ in steps), (s for _, s in steps))


def prepare(data: Interactions, use_text: bool, behaviours: Behaviours | None = None) -> tuple[Vocabulary, Split]:
    """Vocabulary and leave-last-out split of internal-id sequences, with each position's behaviour ids when
    ``behaviours`` is given."""
    vocab = Vocabulary.build(data, include_catalog_only=use_text)
    if behaviours is None or data.behaviour is None:
        return vocab, leave_last_out([vocab.encode_seq(s) for s in data.sequences])
    steps = [behaviours.encode([t for t, _ in user], [s for _, s in user]) for user in data.behaviour]
    return vocab, leave_last_out([vocab.encode_seq(s) for s in data.sequences], steps)


def train_and_export(
    source: DataSource,
    model_config: ModelConfig,
    train_config: TrainConfig,
    model_root: str | Path,
    text: TextOptions = TextOptions(),
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    behaviour: bool | None = None,
    adaptive: frozenset[str] = frozenset(),
) -> TrainOutcome:
    """Loads data, trains SASRec, evaluates it and both baselines on the test split, saves a
    checkpoint and publishes a new artifact version under ``model_root``.

    Args:
        source: the interactions.
        model_config: hyper-parameters (``n_rows`` and ``text_dim`` are set from the data).
        train_config: training settings.
        model_root: folder of model versions.
        text: text embedding options.
        checkpoint_dir: where ``<version>.pt`` goes (default ``<model_root>-checkpoints``).
        progress: show progress bars.
        behaviour: read each event's type and scenario (None = when the events differ in them).
        adaptive: settings the user left unset, chosen for the data's density (:mod:`encoders.recipe`).
    """
    data = source.load()
    use_text = _use_text(data, text)
    behaviours = behaviour_of(data, behaviour)
    vocab, split = prepare(data, use_text, behaviours)
    if len(split.valid) == 0:
        raise DataError("No user has 3 or more events, so there is nothing to validate on; give more events per user.")
    logger.info("data %s: %d users, %d items, %d events", data.source, len(data.user_ids), vocab.n_items, data.n_events)
    model_config, train_config, recipe = adapt(model_config, train_config, split, adaptive)
    if recipe["chosen"]:
        logger.info(
            "recipe for this data (validation targets %.1f%% of training targets): %s",
            100 * recipe["valid_share"],
            recipe["chosen"],
        )
    text_emb, text_model = None, None
    device = str(resolve_device(train_config.device))
    if use_text:
        text_emb, text_model = text_embeddings(item_texts(data, vocab), text, device, progress)
    cfg = dataclasses.replace(
        model_config,
        n_rows=vocab.n_rows,
        text_dim=0 if text_emb is None else int(text_emb.shape[1]),
        n_types=behaviours.n_types if behaviours else 0,
        n_scenarios=behaviours.n_scenarios if behaviours else 0,
    )
    seed_everything(train_config.seed)
    model = build_model(cfg, split.train, text_emb)
    result = train_model(model, split, train_config, progress=progress)
    selected = result
    if train_config.refit and result.best_epoch:
        logger.info("fitting again on the validation targets too, for %d epochs", result.best_epoch)
        result = refit_model(cfg, split, text_emb, train_config, result.best_epoch, progress)
    blend, blend_choice = choose_blend(selected, split, vocab.n_rows, train_config.blend, progress)
    alone = model_scorer(result.model, result.device)
    metrics: dict[str, Any] = {
        "split": SPLIT_NAME,
        "sasrec": evaluate_scorer(blended_scorer(alone, blend and blend.module(cfg.max_len)), split.test),
        **({"sasrec_alone": evaluate_scorer(alone, split.test)} if blend else {}),
        **evaluate_baselines(split, vocab.n_rows, "test"),
        "valid_sasrec": selected.best_valid,
    }
    training = {
        "data": data.source,
        "n_users": len(data.user_ids),
        "n_items": vocab.n_items,
        "n_events": data.n_events,
        "epochs": selected.epochs_run,
        "best_epoch": selected.best_epoch,
        "seconds": round(selected.seconds + (result.seconds if result is not selected else 0.0), 2),
        "seconds_per_epoch": round(selected.seconds_per_epoch, 3),
        "recipe": recipe,
        "refit_epochs": result.epochs_run if result is not selected else 0,
        "device": result.device,
        "seed": train_config.seed,
        "threads": torch.get_num_threads(),
        "blend": blend_choice,
    }
    if text_emb is not None:
        # chosen with the model selected on validation: a refit model has trained on the validation targets
        training["new_item_mixture"] = fit_new_item_temperature(selected.model, split.valid, seed=train_config.seed)
    ckpt = Checkpoint(result.model.cpu(), vocab, train_config, training, metrics, text_model, behaviours, blend)
    version = write_artifact(
        ckpt.model,
        vocab,
        model_root,
        top_k=train_config.top_k,
        training=training,
        metrics=metrics,
        extra_config=_train_summary(train_config),
        text_model=text_model,
        behaviours=behaviours,
        new_item_mixture=training.get("new_item_mixture"),
        blend=blend,
    )
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir(model_root)
    ckpt_path = save_checkpoint(ckpt_dir / f"{version.name}.pt", ckpt)
    return TrainOutcome(version, ckpt_path, metrics, result, training, blend)


def choose_blend(
    selected: TrainResult, split: Split, n_rows: int, enabled: bool, progress: bool = False
) -> tuple[Blend | None, dict[str, Any] | None]:
    """The co-occurrence blend to export (None: the model alone) and the choice for the manifest.

    The weight is chosen with the model selected on validation and followers counted on the training sequences
    (neither has seen the validation targets); the exported followers are counted on everything before the test
    targets, like the co-occurrence baseline's.
    """
    if not enabled:
        return None, None
    scorer = model_scorer(selected.model, selected.device)
    choice = choose_weight(scorer, Followers.fit(split.train, n_rows), split.valid, progress=progress)
    if not choice["weight"]:
        return None, choice
    return Blend(Followers.fit(split.train_valid, n_rows), choice["weight"]), choice


def _train_summary(cfg: TrainConfig) -> dict[str, Any]:
    keep = (
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "loss",
        "n_negatives",
        "patience",
        "eval_every",
        "id_dropout",
        "unk_prob",
        "max_minutes",
        "precision",
        "windows",
        "lr_drops",
        "lr_drop_factor",
        "ema_decay",
        "refit",
        "blend",
    )
    return {k: v for k, v in cfg.to_dict().items() if k in keep}


def export_checkpoint(checkpoint: str | Path, model_root: str | Path, top_k: int | None = None) -> Path:
    """Publishes a new artifact version from a saved checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    return write_artifact(
        ckpt.model,
        ckpt.vocab,
        model_root,
        top_k=top_k or ckpt.train_config.top_k,
        training=ckpt.training,
        metrics=ckpt.metrics,
        extra_config=_train_summary(ckpt.train_config),
        text_model=ckpt.text_model,
        behaviours=ckpt.behaviours,
        new_item_mixture=ckpt.training.get("new_item_mixture"),
        blend=ckpt.blend,
    )


def evaluate_version(
    version_dir: str | Path, source: DataSource, device: str = "cpu", batch_size: int = 256
) -> dict[str, dict[str, float]]:
    """Ranking metrics of an exported version, scored by the worker's own engine, and of the baselines.

    The version is loaded by :func:`serving.artifact.load_artifact` and scored by :class:`serving.engine.Engine`
    (the code that serves it), so what is measured here is what a worker serves. The data's item ids are
    mapped through the artifact's ``items.tsv`` (unknown -> 1). The graph masks the items of its ``max_len``
    input; older history items are removed from its ``top_k`` list afterwards. Only ``top_k`` items come
    back, so ``mrr`` is MRR@top_k here (a target ranked below them counts 0); NDCG@10 and Recall@10 are
    exact unless more than ``top_k - 10`` old history items crowd the list.
    """
    from serving.artifact import load_artifact
    from serving.engine import Engine

    engine = Engine(
        load_artifact(version_dir), device="cuda" if device.startswith("cuda") else "cpu", max_batch=batch_size
    )
    vocab = Vocabulary(engine.artifact.item_ids[FIRST_ITEM_ID:], ("",) * engine.artifact.n_items)
    data = source.load()
    split = leave_last_out([vocab.encode_seq(s) for s in data.sequences])
    # the test histories' behaviour, as the worker keeps it: (event types, scenarios) of every item but the last
    steps = [tuple(zip(*user[:-1], strict=True)) for user in data.behaviour or () if len(user) >= 3]
    ranks = []
    test = split.test
    for start in range(0, len(test), batch_size):
        histories = test.histories[start : start + batch_size]
        item_seq = left_pad(histories, engine.max_len)
        behaviour = None
        if engine.behaviours is not None and steps:
            behaviour = engine.encode_behaviour(item_seq, steps[start : start + batch_size])
        scores, ids = engine.score(item_seq, behaviour=behaviour)
        for row, hist in enumerate(histories):
            # the graph masks the last max_len items; the protocol excludes the whole history
            keep = np.isfinite(scores[row]) & ~np.isin(ids[row], hist)
            ranked = ids[row][keep]
            hit = np.flatnonzero(ranked == test.targets[start + row])
            ranks.append(float(hit[0]) if hit.size else np.inf)
    out = {"sasrec": metrics_from_ranks(np.asarray(ranks))}
    out.update(evaluate_baselines(split, vocab.n_rows, "test"))
    return out


def cold_start_evaluation(
    source: DataSource,
    model_config: ModelConfig,
    train_config: TrainConfig,
    text: TextOptions = TextOptions(),
    protocol: str = "auto",
    holdout: float = 0.1,
    min_users: int = 100,
    rows: str = "catalog",
    progress: bool = True,
) -> dict[str, Any]:
    """Cold-start evaluation (``streamrec evaluate --cold-start``): holds out cold items,
    trains SASRec with text without them and ranks them for the test users whose target is
    one of them (see :mod:`encoders.coldstart`). Nothing is exported.

    Raises:
        DataError: without item texts, or when no test user has a cold target.
    """
    from encoders.coldstart import run_cold_start

    data = source.load()
    if text.enabled is False:
        raise DataError("--cold-start ranks unseen items from their text; drop --no-text.")
    _use_text(data, TextOptions(True, text.model_path, text.batch_size))
    device = str(resolve_device(train_config.device))
    model_path: list[str] = []

    def embed(texts: list[str]) -> np.ndarray:
        table, path = text_embeddings(texts, text, device, progress)
        model_path.append(path)
        return table

    report = run_cold_start(
        data,
        model_config,
        train_config,
        embed,
        protocol=protocol,
        holdout=holdout,
        min_users=min_users,
        rows=rows,
        progress=progress,
    )
    report["data"] = {"source": data.source, "users": len(data.user_ids), "events": data.n_events}
    report["text_model"] = model_path[0] if model_path else None
    return report

"""Command line: ``train``, ``evaluate`` and ``export`` (also reached as ``streamrec <cmd>``)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from encoders.config import ModelConfig, TrainConfig
from encoders.data import DataError
from encoders.recipe import ADAPTIVE, SPARSE
from serving.artifact import ArtifactError

logger = logging.getLogger(__name__)

_D_MODEL = ModelConfig()
_D_TRAIN = TrainConfig()


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (exactly one of --events, --sasrec, --ratings)")
    g.add_argument("--events", type=Path, help="events JSONL (the events topic contract)")
    g.add_argument("--items", type=Path, help="items JSONL with titles/texts (with --events)")
    g.add_argument("--sasrec", type=Path, help="SASRec 'user item' file, chronological")
    g.add_argument(
        "--sasrec-items-map", type=Path, help="'SAS_ID ORIGINAL_ID' file to attach --movies titles to --sasrec ids"
    )
    g.add_argument("--ratings", type=Path, help="MovieLens-1M ratings.dat")
    g.add_argument("--movies", type=Path, help="MovieLens movies.dat (titles and genres)")


def _add_hparam_args(g) -> None:
    g.add_argument("--epochs", type=int, default=_D_TRAIN.epochs)
    g.add_argument("--max-len", type=int, default=_D_MODEL.max_len)
    g.add_argument("--dim", type=int, default=_D_MODEL.dim)
    g.add_argument("--layers", type=int, default=_D_MODEL.n_layers)
    g.add_argument("--heads", type=int, default=_D_MODEL.n_heads)
    g.add_argument(
        "--dropout",
        type=float,
        help=f"default {_D_MODEL.dropout}; train on sparse data: {SPARSE['dropout']} (docs/model.md, 'Sparse data')",
    )
    g.add_argument("--lr", type=float, default=_D_TRAIN.lr)
    g.add_argument("--weight-decay", type=float, default=_D_TRAIN.weight_decay)
    g.add_argument("--batch-size", type=int, default=_D_TRAIN.batch_size)
    g.add_argument(
        "--patience", type=int, default=_D_TRAIN.patience, help="validations without a better NDCG@10 before stopping"
    )
    g.add_argument("--eval-every", type=int, default=_D_TRAIN.eval_every)
    g.add_argument(
        "--lr-drops",
        type=int,
        default=_D_TRAIN.lr_drops,
        help="cut the learning rate this many times at a validation plateau, each "
        "time from the best weights, before stopping",
    )
    g.add_argument(
        "--lr-drop-factor", type=float, default=_D_TRAIN.lr_drop_factor, help="multiplier of each --lr-drops cut"
    )
    g.add_argument(
        "--ema-decay",
        type=float,
        help="validate and keep a moving average of the weights with this per-step decay (0 = off, e.g. 0.99); "
        f"default {_D_TRAIN.ema_decay}, train on sparse data: {SPARSE['ema_decay']}",
    )
    g.add_argument("--loss", choices=("ce", "sampled"), default=_D_TRAIN.loss)
    g.add_argument("--negatives", type=int, default=_D_TRAIN.n_negatives, help="negatives per batch for --loss sampled")
    g.add_argument(
        "--max-minutes",
        type=float,
        default=_D_TRAIN.max_minutes,
        help="wall-clock budget for training; 0 = none (best weights are kept)",
    )
    g.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=_D_TRAIN.precision,
        help="bf16: bfloat16 matmuls (several times faster on CPUs with AVX512-BF16 or AMX, and on GPUs)",
    )
    g.add_argument(
        "--windows",
        action=argparse.BooleanOptionalAction,
        default=_D_TRAIN.windows,
        help="train on every event of histories longer than --max-len, in windows "
        "(--no-windows: the newest --max-len events of each user only)",
    )


def _add_blend_arg(g, help_text: str) -> None:
    g.add_argument("--blend", action=argparse.BooleanOptionalAction, default=_D_TRAIN.blend, help=help_text)


def _add_text_model_arg(g) -> None:
    g.add_argument(
        "--text-model", type=Path, help="local Hugging Face model folder (default: packaged all-MiniLM-L6-v2)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamrec", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train SASRec, evaluate, export a new model version")
    _add_data_args(t)
    t.add_argument("--out", type=Path, required=True, help="model root (one folder per version)")
    t.add_argument(
        "--checkpoint-dir", type=Path, help="where the training checkpoint goes (default: <out>-checkpoints)"
    )
    _add_hparam_args(t)
    t.add_argument("--seed", type=int, default=_D_TRAIN.seed)
    t.add_argument("--device", default=_D_TRAIN.device, help="auto, cpu or cuda")
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--top-k", type=int, default=_D_TRAIN.top_k, help="items returned by the graph")
    text = t.add_mutually_exclusive_group()
    text.add_argument(
        "--text",
        dest="text",
        action="store_true",
        default=None,
        help="fuse item text embeddings (default: when items have text)",
    )
    text.add_argument("--no-text", dest="text", action="store_false")
    t.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after early stopping, train again on the validation targets too for the chosen number of epochs and "
        "export that model (default: on sparse data, where validation targets are >= 5%% of training targets)",
    )
    _add_blend_arg(
        t,
        "blend item-to-item co-occurrence into the scores with a weight chosen on validation, 0 when it does not "
        "help (default: on; --no-blend: the model alone)",
    )
    t.add_argument(
        "--behaviour",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add learned event-type and scenario embeddings at every position (default: when the events "
        "differ in event type or scenario; --no-behaviour: items only)",
    )
    _add_text_model_arg(t)
    t.add_argument("--no-progress", action="store_true", help="hide progress bars")

    e = sub.add_parser(
        "evaluate",
        help="ranking metrics of an exported version (onnxruntime), or --cold-start",
        description="Either --model VERSION (an exported version through onnxruntime) or "
        "--cold-start (hold out cold items, train SASRec with text without them, rank them).",
    )
    e.add_argument("--model", type=Path, help="a model version folder (not with --cold-start)")
    _add_data_args(e)
    e.add_argument("--device", default="cpu", help="cpu or cuda (onnxruntime provider; with --cold-start also auto)")
    c = e.add_argument_group("cold start (--cold-start: trains a fresh SASRec with text; nothing is exported)")
    c.add_argument(
        "--cold-start", action="store_true", help="evaluate on items never seen in training (needs item texts)"
    )
    c.add_argument(
        "--cold-protocol",
        choices=("auto", "strict", "random"),
        default="auto",
        help="strict: items whose every interaction is a test target; random: hold "
        "out --cold-holdout of the items; auto: strict when it gives at least "
        "--cold-min-users cold test users (default)",
    )
    c.add_argument("--cold-holdout", type=float, default=0.1, help="fraction of items held out by the random protocol")
    c.add_argument("--cold-min-users", type=int, default=100)
    c.add_argument(
        "--cold-rows",
        choices=("catalog", "appended"),
        help="catalog (default): cold rows (text only) are in the table during training "
        "(as streamrec train does); appended: added after training (live catalog)",
    )
    c.add_argument(
        "--live-path",
        action="store_true",
        help="appended rows measured through the worker's own path: publish the model, load it with the "
        "serving Engine and TextRows, add the cold items with engine.add_items and rank with engine.recommend; "
        "plain, neighbour-imputed and validation-chosen rows of new items (docs/model.md, 'Cold start')",
    )
    c.add_argument(
        "--live-models", type=Path, help="with --live-path: publish the version here (default: a temporary folder)"
    )
    c.add_argument(
        "--new-item-mix",
        metavar="SHARE,TEMPERATURE,MASS",
        help="with --live-path: how new items compete with trained ones, as STREAMREC_NEW_ITEM_SHARE, _TEMPERATURE "
        "(auto or a number each) and _MASS (default: the worker's defaults, auto,auto,0.01; docs/model.md)",
    )
    c.add_argument(
        "--id-dropout",
        type=float,
        default=_D_TRAIN.id_dropout,
        help="probability to train each item as a text-only row per step (keeps text-only rows usable)",
    )
    _add_blend_arg(
        c, "with --live-path: publish the co-occurrence blend chosen on validation, as train does (default: on)"
    )
    c.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    b = e.add_argument_group("behaviour ablation (trains fresh models; nothing is exported)")
    b.add_argument(
        "--behaviour-ablation",
        action="store_true",
        help="train SASRec with and without event-type and scenario embeddings on the same split and seeds; "
        "test metrics overall and by the event type of the user's newest event",
    )
    b.add_argument("--seeds", default="1,2", help="comma-separated seeds of --behaviour-ablation")
    _add_hparam_args(c)
    c.add_argument("--seed", type=int, default=_D_TRAIN.seed)
    c.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    _add_text_model_arg(c)
    c.add_argument("--no-progress", action="store_true", help="hide progress bars")

    x = sub.add_parser("export", help="publish a new model version from a training checkpoint")
    x.add_argument("--checkpoint", type=Path, required=True, help="a .pt file written by train")
    x.add_argument("--out", type=Path, required=True, help="model root")
    x.add_argument("--top-k", type=int, help="items returned by the graph (default: as trained)")
    return parser


def _source(args: argparse.Namespace):
    from encoders.pipeline import DataSource

    return DataSource(args.events, args.items, args.sasrec, args.sasrec_items_map, args.movies, args.ratings)


def _train(args: argparse.Namespace) -> int:
    from encoders.evaluate import format_table
    from encoders.pipeline import TextOptions, train_and_export

    model_cfg, train_cfg = _training_setup(args)
    outcome = train_and_export(
        _source(args),
        model_cfg,
        train_cfg,
        args.out,
        text=TextOptions(args.text, args.text_model),
        checkpoint_dir=args.checkpoint_dir,
        progress=not args.no_progress,
        behaviour=args.behaviour,
        adaptive=_adaptive(args),
    )
    t = outcome.training
    print(
        f"trained {t['epochs']} epochs in {t['seconds']:.1f}s on {t['device']} "
        f"(best epoch {t['best_epoch']}, {t['seconds_per_epoch']:.2f}s/epoch)"
    )
    if t["recipe"]["chosen"]:
        share = 100 * t["recipe"]["valid_share"]
        print(f"for this data (validation targets {share:.1f}% of training targets): {t['recipe']['chosen']}")
    if t["refit_epochs"]:
        print(f"fitted again with the validation targets for {t['refit_epochs']} epochs: the exported model")
    if t.get("blend"):
        grid = ", ".join(f"{w}: {v:.4f}" for w, v in t["blend"]["valid_ndcg10"].items())
        print(f"co-occurrence blend weight {t['blend']['weight']:g} (validation NDCG@10 by weight: {grid})")
    print(f"test: {outcome.metrics['split']}")
    shown = ("sasrec", "sasrec_alone", "popularity", "cooccurrence")
    print(format_table({k: v for k, v in outcome.metrics.items() if k in shown}))
    print(f"checkpoint: {outcome.checkpoint}")
    print(outcome.version_dir)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from encoders.evaluate import SPLIT_NAME, format_table
    from encoders.pipeline import evaluate_version

    if args.cold_start:
        if args.model is not None:
            raise DataError("--cold-start trains its own model; drop --model.")
        return _cold_start(args)
    if args.behaviour_ablation:
        if args.model is not None:
            raise DataError("--behaviour-ablation trains its own models; drop --model.")
        return _ablation(args)
    if args.model is None:
        raise DataError("evaluate needs --model VERSION (or --cold-start).")
    metrics = evaluate_version(args.model, _source(args), device=args.device)
    print(f"{args.model}: {SPLIT_NAME} (model through onnxruntime; its mrr is MRR@top_k)")
    print(format_table(metrics))
    return 0


def _configs(args: argparse.Namespace, device: str) -> tuple[ModelConfig, TrainConfig]:
    dropout = _D_MODEL.dropout if args.dropout is None else args.dropout
    model_cfg = ModelConfig(
        max_len=args.max_len, dim=args.dim, n_layers=args.layers, n_heads=args.heads, dropout=dropout
    )
    train_cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        loss=args.loss,
        n_negatives=args.negatives,
        patience=args.patience,
        eval_every=args.eval_every,
        seed=args.seed,
        device=device,
        top_k=getattr(args, "top_k", _D_TRAIN.top_k),
        max_minutes=args.max_minutes,
        precision=args.precision,
        windows=args.windows,
        lr_drops=args.lr_drops,
        lr_drop_factor=args.lr_drop_factor,
        ema_decay=_D_TRAIN.ema_decay if args.ema_decay is None else args.ema_decay,
        refit=bool(getattr(args, "refit", None)),
        blend=getattr(args, "blend", _D_TRAIN.blend),
    )
    return model_cfg, train_cfg


def _adaptive(args: argparse.Namespace) -> frozenset[str]:
    """The settings left unset on the command line: ``train`` chooses them for the data (encoders.recipe)."""
    return frozenset(name for name in ADAPTIVE if getattr(args, name, None) is None)


def _training_setup(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """Apply --threads and build the two configs of a training run."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return _configs(args, args.device)


def _cold_start(args: argparse.Namespace) -> int:
    import json

    from encoders.coldstart import format_report
    from encoders.pipeline import TextOptions, cold_start_evaluation

    model_cfg, train_cfg = _training_setup(args)
    train_cfg = dataclasses.replace(train_cfg, id_dropout=args.id_dropout)
    if args.live_path:
        return _live_path(args, model_cfg, train_cfg)
    if args.live_models is not None or args.new_item_mix is not None:
        raise DataError("--live-models and --new-item-mix go with --live-path.")
    report = cold_start_evaluation(
        _source(args),
        model_cfg,
        train_cfg,
        TextOptions(True, args.text_model),
        protocol=args.cold_protocol,
        holdout=args.cold_holdout,
        min_users=args.cold_min_users,
        rows=args.cold_rows or "catalog",
        progress=not args.no_progress,
    )
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _ablation(args: argparse.Namespace) -> int:
    import json

    from encoders.ablation import behaviour_ablation, format_ablation

    try:
        seeds = tuple(int(s) for s in args.seeds.split(","))
    except ValueError:
        raise DataError(f"--seeds takes comma-separated integers, not {args.seeds!r}") from None
    model_cfg, train_cfg = _training_setup(args)
    report = behaviour_ablation(_source(args), model_cfg, train_cfg, seeds, progress=not args.no_progress)
    print(format_ablation(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _new_item_mix(value: str | None):
    from serving.mixture import NewRowMix

    if value is None:
        return None  # the worker's defaults
    try:
        share, temperature, mass = value.split(",")
        return NewRowMix(
            None if share == "auto" else float(share),
            temperature=None if temperature == "auto" else float(temperature),
            mass=float(mass),
        )
    except ValueError as exc:
        hint = "--new-item-mix takes SHARE,TEMPERATURE,MASS (e.g. auto,auto,0.01)"
        raise DataError(f"{hint}, not {value!r}: {exc}") from None


def _live_path(args: argparse.Namespace, model_cfg: ModelConfig, train_cfg: TrainConfig) -> int:
    import json

    from encoders.coldstart import format_live_report, run_live_path

    if args.cold_rows == "catalog":
        raise DataError("--live-path measures rows appended after training; drop --cold-rows catalog.")
    data = _source(args).load()
    if not any(info.full_text for info in data.items.values()):
        raise DataError("--cold-start ranks unseen items from their text: give item titles or texts.")
    report = run_live_path(
        data,
        model_cfg,
        train_cfg,
        text_model=args.text_model,
        protocol=args.cold_protocol,
        holdout=args.cold_holdout,
        min_users=args.cold_min_users,
        progress=not args.no_progress,
        model_root=args.live_models,
        ort_threads=args.threads or 0,
        mix=_new_item_mix(args.new_item_mix),
    )
    report["data"] = {"source": data.source, "users": len(data.user_ids), "events": data.n_events}
    print(format_live_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _export(args: argparse.Namespace) -> int:
    from encoders.pipeline import export_checkpoint

    print(export_checkpoint(args.checkpoint, args.out, args.top_k))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs a subcommand; ``argv[0]`` is ``train``, ``evaluate`` or ``export``.

    Returns:
        The process exit status (0 success, 2 bad input).
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    commands = {"train": _train, "evaluate": _evaluate, "export": _export}
    try:
        return commands[args.command](args)
    except (DataError, FileNotFoundError, ValueError, ArtifactError) as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

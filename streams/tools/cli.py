"""The `streamrec` command: the worker and the tools around it; train/evaluate/export go to encoders."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from streams.settings import Settings, unknown_variables

logger = logging.getLogger(__name__)

TRAINING_COMMANDS = ("train", "evaluate", "export")
KEEP_TOPICS = "keep each run's topics on the broker (by default they are deleted once the run is measured)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamrec",
        description="Real-time sequence-aware recommendations on Kafka. Settings come from STREAMREC_* "
        "environment variables (see README). Training commands: "
        + ", ".join(TRAINING_COMMANDS)
        + " (need the `train` extra; `streamrec train --help`).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("worker", help="run the Faust worker: events -> recommendations")

    demo = sub.add_parser("demo", help="local Kafka + simulated data + trained model + worker + replay, then report")
    demo.add_argument("--users", type=int, default=400)
    demo.add_argument("--items", type=int, default=300)
    demo.add_argument("--replay", type=int, default=3000, help="events replayed through the worker")
    demo.add_argument("--rate", type=float, default=1000.0, help="replay rate, events/s")
    demo.add_argument("--workdir", type=Path, default=Path("var/demo"))

    sim = sub.add_parser("simulate", help="write a synthetic event log (events.jsonl, items.jsonl)")
    sim.add_argument("--out", type=Path, required=True)
    sim.add_argument("--users", type=int, default=400)
    sim.add_argument("--items", type=int, default=300)
    sim.add_argument("--events-per-user", type=int, default=40)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument(
        "--behaviour",
        action="store_true",
        help="event types and scenarios that carry signal (shop, video, news), see docs/model.md",
    )

    prod = sub.add_parser("produce", help="replay an event file into Kafka (JSONL, SASRec `user item`, ratings.dat)")
    prod.add_argument("file", type=Path)
    prod.add_argument("--format", choices=("auto", "jsonl", "sasrec", "ratings"), default="auto")
    prod.add_argument("--rate", type=float, default=0.0, help="events/s, 0 = as fast as possible")
    prod.add_argument("--limit", type=int, default=None)
    prod.add_argument("--keep-ts", action="store_true", help="keep the file's ts instead of the send time")
    prod.add_argument("--topic", default=None, help="default: STREAMREC_EVENTS_TOPIC")

    items = sub.add_parser(
        "items", help="publish a catalog file to the items topic (JSONL per the contract, or MovieLens movies.dat)"
    )
    items.add_argument("file", type=Path)
    items.add_argument("--scenario", default=None, help="scenario of the items that name none")
    items.add_argument("--topic", default=None, help="default: STREAMREC_ITEMS_TOPIC")

    cons = sub.add_parser("consume", help="print recommendation records as JSON lines")
    cons.add_argument("--topic", default=None, help="default: STREAMREC_RECOMMENDATIONS_TOPIC")
    cons.add_argument("--from-beginning", action="store_true")
    cons.add_argument("--limit", type=int, default=None)
    cons.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")

    check = sub.add_parser("check-model", help="validate a model version the way the worker loads it, before a rollout")
    check.add_argument(
        "path", type=Path, nargs="?", default=None, help="version folder or model root (default: STREAMREC_MODEL_DIR)"
    )

    promote = sub.add_parser(
        "promote",
        help="make the shadow model live if its online NDCG@10 beat the live model's on the same events "
        "(sign test and paired bootstrap over the grades topic); exit 1 when refused",
    )
    promote.add_argument("--min-events", type=int, default=1000, help="paired graded events needed at least")
    promote.add_argument("--alpha", type=float, default=0.05, help="significance level of the one-sided sign test")
    promote.add_argument("--dry-run", action="store_true", help="print the evidence and the verdict, change nothing")
    promote.add_argument("--timeout", type=float, default=120.0, help="seconds allowed to read the grades topic")

    bench = sub.add_parser(
        "bench", help="throughput and latency: per-event, micro-batched and the pipeline ceiling; engine-only"
    )
    bench.add_argument("--events", type=int, default=20000, help="backlog drained to measure events/s")
    bench.add_argument("--users", type=int, default=5000, help="distinct users the events are spread over")
    bench.add_argument(
        "--rates",
        default="250,half",
        help="offered events/s for the latency measurements, comma-separated; 'half' = half the micro-batched "
        "events/s measured in the same run on full histories (offered to the micro-batched path only)",
    )
    bench.add_argument("--paced-seconds", type=float, default=20.0, help="seconds each rate is offered")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="engine table devices")
    bench.add_argument("--skip-ceiling", action="store_true", help="leave out the no-op-scorer pipeline row")
    bench.add_argument(
        "--shadow", action="store_true", help="add a micro-batched row with the same model also scored as a shadow"
    )
    bench.add_argument(
        "--new-items",
        type=int,
        default=0,
        help="also measure new catalog items: embedded/s, batch cost at 10x the catalog, publish to recommendable",
    )
    bench.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    bench.add_argument("--workdir", type=Path, default=Path("var/bench"))
    bench.add_argument("--keep-topics", action="store_true", help=KEEP_TOPICS)
    bench.add_argument("--engine-only", action="store_true")

    chaos = sub.add_parser(
        "chaos",
        help="fault scenarios against the real broker, judged by an oracle over "
        "every event; prints one table (exit 1 when a scenario finds a fault)",
    )
    chaos.add_argument(
        "--scenarios",
        default="all",
        help="comma-separated, of: hostile, kill9-memory, "
        "kill9-rocksdb, kill9-static, failover-rocksdb, join-kill, broker-restart, sigterm-broker-down (default all)",
    )
    chaos.add_argument("--users", type=int, default=300)
    chaos.add_argument("--events-per-user", type=int, default=40, help="at most STREAMREC_MAX_LEN")
    chaos.add_argument("--rate", type=float, default=300.0, help="valid events per second")
    chaos.add_argument("--hostile", type=int, default=10000, help="hostile payloads in the hostile scenario")
    chaos.add_argument("--soak-minutes", type=float, default=0.0, help="also run a soak this long (RSS every 10 s)")
    chaos.add_argument("--soak-rate", type=float, default=1000.0)
    chaos.add_argument("--soak-users", type=int, default=100_000)
    chaos.add_argument(
        "--restore-users",
        type=int,
        default=0,
        help="also time a RocksDB restore of this many users' sequences into an empty data directory",
    )
    chaos.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    chaos.add_argument("--workdir", type=Path, default=Path("var/chaos"))
    chaos.add_argument("--keep-topics", action="store_true", help=KEEP_TOPICS)
    return parser


def _settings() -> Settings:
    for problem in unknown_variables(os.environ):
        print(f"streamrec: warning: {problem}", file=sys.stderr)
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"STREAMREC_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"streamrec: bad setting: {problems}") from None


def _run(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.command == "worker":
        from streams.app import run_worker

        return run_worker(settings)
    if args.command == "simulate":
        from streams.tools.simulate import simulate, write_dataset
        from streams.tools.simulate_behaviour import simulate_behaviour

        generate = simulate_behaviour if args.behaviour else simulate
        events, items = generate(args.users, args.items, args.events_per_user, args.seed)
        events_path, items_path = write_dataset(args.out, events, items)
        print(f"wrote {len(events)} events to {events_path} and {len(items)} items to {items_path}")
        return 0
    if args.command == "produce":
        from streams.tools.produce import count_lines, produce, read_events

        sent = produce(
            settings.kafka_bootstrap,
            args.topic or settings.events_topic,
            read_events(args.file, args.format),
            rate=args.rate,
            limit=args.limit,
            restamp=not args.keep_ts,
            total=count_lines(args.file),
            partitions=settings.partitions,
        )
        print(f"sent {sent} events")
        return 0
    if args.command == "items":
        from streams.tools.items_file import publish_items

        try:
            sent = publish_items(
                settings.kafka_bootstrap,
                args.topic or settings.items_topic,
                args.file,
                args.scenario,
                settings.partitions,
            )
        except ValueError as exc:
            raise SystemExit(f"streamrec items: {exc}") from None
        print(f"sent {sent} items")
        return 0
    if args.command == "consume":
        from streams.tools.consume import records

        for record in records(
            settings.kafka_bootstrap,
            args.topic or settings.recommendations_topic,
            args.from_beginning,
            args.timeout,
            args.limit,
        ):
            print(json.dumps(record), flush=True)
        return 0
    if args.command == "demo":
        from streams.tools.demo import run_demo

        return run_demo(settings, args)
    if args.command == "check-model":
        return _check_model(settings, args.path or settings.model_dir)
    if args.command == "promote":
        from streams.tools.promote import run_promote

        return run_promote(settings, args.min_events, args.alpha, args.dry_run, args.timeout)
    if args.command == "chaos":
        from streams.tools.chaos.command import run_chaos

        return run_chaos(settings, args)
    if args.command == "bench":
        from streams.tools.bench import run_bench

        return run_bench(settings, args)
    raise AssertionError(args.command)


def _check_model(settings: Settings, path: Path) -> int:
    import time

    from serving.artifact import resolve_version
    from serving.registry import engine_loader

    version = resolve_version(path)
    started = time.perf_counter()
    engine = engine_loader(settings.device, settings.max_batch, settings.ort_threads, settings.exclude_seen)(version)
    loaded = time.perf_counter() - started
    manifest = engine.artifact.manifest
    print(f"ok: {version} (model {engine.version}) on {engine.device}, loaded and warmed up in {loaded:.2f}s")
    print(
        f"  {manifest['n_items']} items, dim {manifest['dim']}, max_len {manifest['max_len']}, "
        f"top_k {manifest['top_k']} (STREAMREC_TOP_K={settings.top_k})"
    )
    if settings.top_k > engine.artifact.top_k:
        print(f"streamrec check-model: STREAMREC_TOP_K={settings.top_k} exceeds the model's top_k", file=sys.stderr)
        return 2
    for name, values in manifest.get("metrics", {}).items():
        if isinstance(values, dict):
            print(f"  {name:14s} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `streamrec` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)  # after -v / --verbose
    if command in TRAINING_COMMANDS:
        try:
            from encoders.cli import main as training_main
        except ImportError as exc:
            raise SystemExit(
                f"streamrec {command} needs the training extra: pip install 'streamrec[train]' ({exc})"
            ) from None
        return training_main(argv)
    args = _parser().parse_args(argv)
    level = _settings().log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":  # kafka-python logs every connection retry; our errors say what matters
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    from serving.artifact import ArtifactError
    from streams.kafka_admin import KafkaUnavailable, TopicMismatch

    try:
        return _run(args)
    except (ArtifactError, KafkaUnavailable, TopicMismatch, FileNotFoundError) as exc:
        print(f"streamrec {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

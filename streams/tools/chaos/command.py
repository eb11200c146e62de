"""`streamrec chaos`: every scenario, one table, and optionally a soak and a large restore."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from streams.settings import Settings
from streams.tools.chaos.harness import Row, Setup
from streams.tools.chaos.scenarios import BROKER_SCENARIOS, SCENARIOS, run_scenario
from streams.tools.local_kafka import broker_is_local, ensure_kafka


def table(rows: list[Row]) -> str:
    """The chaos table, one line per scenario."""
    lines = []
    header = [
        "scenario",
        "events",
        "users",
        "lost",
        "applied twice",
        "wrong seqs",
        "dup records",
        "unanswered",
        "stale|in-history",
        "dead letters",
        "recovery s",
        "worker exits",
        "ok",
    ]
    cells = []
    for row in rows:
        v = row.verdict
        cells.append(
            [
                row.scenario,
                v.events,
                v.users,
                v.lost,
                v.applied_twice,
                v.wrong_sequences,
                v.duplicate_records,
                v.unanswered,
                f"{v.stale_records}|{v.history_in_list}",
                f"{v.dead_letters}" + (f" ({v.hostile_missed} missed)" if v.hostile_missed else ""),
                ", ".join(f"{s:.1f}" for s in row.recovery_s) or "-",
                row.exits,
                "yes" if row.ok else "NO",
            ]
        )
    widths = [max(len(str(x)) for x in column) for column in zip(header, *cells)]
    for line in [header, *cells]:
        lines.append(
            " | ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(line, widths)))
        )
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def run_chaos(settings: Settings, args: argparse.Namespace) -> int:
    """`streamrec chaos`: run the scenarios and print the table; exit 1 when any scenario found a fault."""
    from streams.tools.chaos.endurance import restore_time, soak
    from streams.tools.models import find_or_train

    work: Path = args.workdir
    names = list(SCENARIOS) if args.scenarios == "all" else [n.strip() for n in args.scenarios.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(
            f"streamrec chaos: unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)} or 'all'"
        )
    ensure_kafka(settings.kafka_bootstrap)
    model = find_or_train(settings.model_dir, work, 400, 300, epochs=5)
    setup = Setup(
        settings.kafka_bootstrap,
        model,
        work / "runs",
        users=args.users,
        events_per_user=args.events_per_user,
        rate=args.rate,
        hostile=args.hostile,
        local_broker=broker_is_local(),
        keep_topics=args.keep_topics,
    )
    rows = []
    for name in names:
        if name in BROKER_SCENARIOS and not setup.local_broker:
            print(f"skipping {name}: the broker at {settings.kafka_bootstrap} is not one deploy/local/kafka.sh runs")
            continue
        print(f"==> {name}", flush=True)
        started = time.monotonic()
        row = run_scenario(name, setup)
        rows.append(row)
        print(f"    {'ok' if row.ok else 'FAULTS FOUND'} in {time.monotonic() - started:.0f} s", flush=True)
        for line in row.notes + row.verdict.problems:
            print(f"    {line}", flush=True)
    print()
    print(table(rows))
    extra = []
    if args.restore_users:
        print(f"\n==> restore of {args.restore_users} sequences", flush=True)
        extra.append(restore_time(setup, args.restore_users))
        print(extra[-1])
    if args.soak_minutes:
        print(
            f"\n==> soak: {args.soak_minutes} min at {args.soak_rate} events/s over {args.soak_users} users", flush=True
        )
        result = soak(setup, args.soak_minutes, args.soak_rate, args.soak_users)
        extra.append(result.summary())
        print(extra[-1])
    if args.json:
        args.json.write_text(json.dumps({"rows": [_row_json(r) for r in rows], "extra": extra}, indent=2))
    return 0 if all(r.ok for r in rows) else 1


def _row_json(row: Row) -> dict:
    data = {k: v for k, v in vars(row.verdict).items() if k != "problems"}
    return {
        "scenario": row.scenario,
        **data,
        "recovery_s": row.recovery_s,
        "worker_exits": row.exits,
        "ok": row.ok,
        "notes": row.notes,
        "problems": row.verdict.problems,
    }

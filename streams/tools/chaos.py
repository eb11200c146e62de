"""`streamrec chaos`: fault scenarios against the real broker, each judged by an oracle over every event."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from serving.artifact import load_artifact, resolve_version
from streams.app import HOUSEKEEPING_SECONDS, TABLE_NAME
from streams.sequences import is_watermark_key
from streams.tools.hostile import KINDS, hostile_messages
from streams.tools.kafka_io import Feeder, Record, Tail, read_topic
from streams.tools.oracle import Oracle, Verdict
from streams.tools.worker_process import WorkerProcess, metric_value

if TYPE_CHECKING:
    import argparse

    from streams.settings import Settings

logger = logging.getLogger(__name__)

Message = tuple[bytes | None, bytes | None]


@dataclass
class Setup:
    """What every scenario shares: the broker, the model, sizes and rates."""

    bootstrap: str
    model_dir: Path
    workdir: Path
    users: int = 300
    events_per_user: int = 20  # at most the worker's max_len, so a final sequence holds all of a user's events
    rate: float = 400.0  # valid events per second
    hostile: int = 2000
    kafka_script: Path | None = None  # deploy/local/kafka.sh: needed by the broker scenarios
    seed: int = 5
    timeout: float = 180.0  # for the last answers of a scenario


@dataclass
class Row:
    """One scenario's line of the chaos table."""

    scenario: str
    verdict: Verdict
    recovery_s: list[float] = field(default_factory=list)
    exits: int = 0  # worker processes that ended without being told to (the watchdog, a crash)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.exits


class Run:
    """One scenario: its own topics and consumer group, the oracle, and the workers started for it."""

    def __init__(self, setup: Setup, name: str, **settings: object) -> None:
        self.setup = setup
        self.name = name
        self.rng = random.Random(setup.seed)
        first = WorkerProcess.isolated(setup.bootstrap, setup.model_dir, setup.workdir / name,
                                       prefix=f"chaos-{name}", top_k=10, **settings)
        self.first = first
        self.workers: list[WorkerProcess] = []
        self.ended: set[int] = set()  # ids of workers this run killed or stopped
        self.exits: list[str] = []
        self.oracle = Oracle(first.settings.max_len)
        catalog = list(load_artifact(resolve_version(setup.model_dir)).item_ids[2:])
        self.users = [f"{name}-u{n}" for n in range(setup.users)]
        per_user = min(setup.events_per_user, first.settings.max_len, len(catalog))
        self.pool = {user: self.rng.sample(catalog, per_user) for user in self.users}
        self.catalog = catalog
        self.tail: Tail | None = None

    # --- events --------------------------------------------------------------------------------------------
    def plan(self, per_user: int) -> list[Message]:
        """The next ``per_user`` valid events of every user, interleaved (each user's in order)."""
        messages = []
        for round_ in range(per_user):
            for user in self.rng.sample(self.users, len(self.users)):
                if not self.pool[user]:
                    continue
                item = self.pool[user].pop()
                event_id = f"{user}-{len(self.oracle.planned)}"
                messages.append((user.encode(), self.oracle.plan(user, item, event_id, time.time())))
        return messages

    def feed(self, messages: list[Message], rate: float | None = None) -> Feeder:
        return Feeder(self.setup.bootstrap, self.first.settings.events_topic, messages,
                      self.setup.rate if rate is None else rate).start()

    # --- workers -------------------------------------------------------------------------------------------
    def start(self, worker: WorkerProcess | None = None) -> WorkerProcess:
        worker = worker or self.first
        self.check_alive()
        worker.start()
        if worker not in self.workers:
            self.workers.append(worker)
        if self.tail is None:
            self.tail = Tail(self.setup.bootstrap, self.first.settings.recommendations_topic)
        return worker

    def kill(self, worker: WorkerProcess) -> float:
        """kill -9; returns the moment it happened."""
        self.check_alive()
        worker.kill()
        self.ended.add(worker.pid)
        return time.time()

    def stop(self, worker: WorkerProcess, timeout: float = 30.0) -> float:
        """SIGTERM; returns how long the process took to end."""
        self.check_alive()
        started = time.monotonic()
        self.ended.add(worker.pid)
        worker.stop(timeout)
        return time.monotonic() - started

    def check_alive(self) -> None:
        """Record workers that ended although nobody stopped them."""
        for worker in self.workers:
            if worker.proc is not None and not worker.alive() and worker.pid not in self.ended:
                self.ended.add(worker.pid)
                self.exits.append(f"worker {worker.pid} exited with {worker.returncode()}:\n{worker.tail(15)}")
        for worker in self.workers:
            if not worker.alive() and worker.proc is not None:
                self.ended.add(worker.pid)

    def wait_serving(self, since: float, timeout: float = 120.0) -> None:
        """Until a recommendation produced after ``since`` (epoch seconds) arrives."""
        assert self.tail is not None

        def served(records: list[dict]) -> bool:
            self.check_alive()
            return any(r["produced_ts"] > since for r in records[-50:])

        self.tail.wait(served, timeout, what=f"{self.name}: a worker serving")

    def wait_drained(self, timeout: float | None = None) -> None:
        """Until the live workers report no lag (their housekeeping runs every few seconds)."""
        deadline = time.monotonic() + (timeout or self.setup.timeout)
        time.sleep(HOUSEKEEPING_SECONDS + 0.5)  # a lag figure computed after the last event was sent
        while time.monotonic() < deadline:
            self.check_alive()
            texts = [w.metrics() for w in self.workers if w.alive()]
            if texts and all('streamrec_consumer_lag_messages{' in t for t in texts) and \
                    sum(metric_value(t, "streamrec_consumer_lag_messages") for t in texts) == 0:
                return
            time.sleep(0.5)
        logger.error("%s: the workers still report lag after %.0fs", self.name, timeout or self.setup.timeout)

    def wait_answered(self, timeout: float | None = None) -> None:
        """Until every user's newest planned event has a recommendation."""
        last = {}
        for event_id, planned in self.oracle.planned.items():
            last[planned.user_id] = event_id
        wanted = set(last.values())

        def done(records: list[dict]) -> bool:
            self.check_alive()
            return wanted <= {r.get("trigger_event_id") for r in records}

        assert self.tail is not None
        try:
            self.tail.wait(done, timeout or self.setup.timeout, what=f"{self.name}: the answer to every last event")
        except TimeoutError as exc:
            logger.error("%s", exc)

    # --- the verdict ---------------------------------------------------------------------------------------
    def finish(self, faults: list[float] | None = None, partitions: Callable[[dict], bool] | None = None) -> Row:
        """Stop the workers, read every topic back and judge. ``faults``: moments to measure recovery from."""
        for worker in self.workers:
            if worker.alive():
                self.stop(worker)
        if self.tail is not None:
            self.tail.close()
        settings = self.first.settings
        bootstrap = self.setup.bootstrap
        events = read_topic(bootstrap, settings.events_topic)
        recommendations = [json.loads(r.value) for r in read_topic(bootstrap, settings.recommendations_topic)]
        dead = [json.loads(r.value) for r in read_topic(bootstrap, settings.dlq_topic)]
        sequences = changelog_sequences(read_topic(bootstrap, f"{settings.app_id}-{TABLE_NAME}-changelog"))
        verdict = self.oracle.judge(events, sequences, recommendations, dead)
        row = Row(self.name, verdict, exits=len(self.exits))
        row.notes.extend(self.exits)
        for moment in faults or []:
            after = [r["produced_ts"] for r in recommendations
                     if r["produced_ts"] > moment and (partitions is None or partitions(r))]
            row.recovery_s.append(round(min(after) - moment, 1) if after else float("inf"))
        return row


def changelog_sequences(records: list[Record]) -> dict[str, list[str]]:
    """user -> items, from the newest value per key of the sequence table's changelog."""
    newest: dict[bytes, bytes | None] = {}
    for record in records:
        if record.key is not None:
            newest[record.key] = record.value
    out = {}
    for key, value in newest.items():
        if value is not None and not is_watermark_key(key):
            out[key.decode()] = list(json.loads(value)["items"])
    return out


# --- scenarios -------------------------------------------------------------------------------------------------

def hostile(setup: Setup) -> Row:
    """Hostile payloads of every kind among valid events: each is dead-lettered, nothing stops."""
    run = Run(setup, "hostile")
    valid = run.plan(setup.events_per_user)
    bad = [(key, value) for _, key, value in hostile_messages(setup.hostile, run.users, run.catalog, setup.seed)]
    mixed: list[Message] = []
    for message in valid:  # the valid ones keep their order; hostile ones land between them at random
        mixed.append(message)
        while bad and run.rng.random() < len(bad) / max(1, len(valid)):
            mixed.append(bad.pop())
    mixed.extend(bad)
    run.start()
    feeder = run.feed(mixed, rate=0)
    feeder.join()
    feeder.close()
    run.wait_answered()
    run.wait_drained()
    counted = metric_value(run.first.metrics(), "streamrec_events_invalid_total")
    row = run.finish()
    row.verdict.metric_mismatch = int(abs(counted - row.verdict.dead_letters))
    if row.verdict.metric_mismatch:
        row.notes.append(f"streamrec_events_invalid_total says {counted:.0f}, the dead-letter topic holds "
                         f"{row.verdict.dead_letters}")
    row.notes.append(f"{setup.hostile} hostile payloads of {min(setup.hostile, len(KINDS))} kinds")
    return row


def kill9(setup: Setup, store: str, kills: int = 3, name: str = "", **settings: object) -> Row:
    """kill -9 the worker ``kills`` times while events flow; each time a new one starts on the same data."""
    run = Run(setup, name or f"kill9-{store.split(':')[0]}", store=store, **settings)
    messages = run.plan(setup.events_per_user)
    run.start()
    feeder = run.feed(messages, rate=min(setup.rate, len(messages) / (kills * 12 + 6)))  # events during every kill
    faults = []
    for _ in range(kills):
        run.wait_serving(since=faults[-1] if faults else 0.0)
        time.sleep(1.5)  # mid-stream, with uncommitted work
        faults.append(run.kill(run.first))
        run.start()
    feeder.join()
    feeder.close()
    run.wait_answered()
    return run.finish(faults)


def failover(setup: Setup) -> Row:
    """RocksDB: kill -9, restart on the same data, kill -9 again, then a worker with a fresh data directory."""
    run = Run(setup, "failover-rocksdb", store="rocksdb://")
    messages = run.plan(setup.events_per_user)
    run.start()
    feeder = run.feed(messages)
    duration = len(messages) / setup.rate
    _sleep_until(feeder, duration / 3)
    faults = [run.kill(run.first)]
    run.start()
    _sleep_until(feeder, duration * 2 / 3)
    faults.append(run.kill(run.first))
    run.start(run.first.sibling("fresh"))
    feeder.join()
    feeder.close()
    run.wait_answered()
    row = run.finish(faults)
    row.notes.append("the last worker restored everything from the changelog into an empty data directory")
    return row


def join_and_kill(setup: Setup) -> Row:
    """A second worker joins the group mid-stream, then the first is killed: the second takes everything."""
    run = Run(setup, "join-kill")
    messages = run.plan(setup.events_per_user)
    run.start()
    feeder = run.feed(messages)
    duration = len(messages) / setup.rate
    _sleep_until(feeder, duration / 4)
    second = run.start(run.first.sibling("second"))
    _sleep_until(feeder, duration * 2 / 3)
    owned = _owned_partitions(run.first)
    fault = run.kill(run.first)
    feeder.join()
    feeder.close()
    run.wait_answered()
    events = read_topic(setup.bootstrap, run.first.settings.events_topic)
    partition_of = {json.loads(r.value).get("event_id"): r.partition for r in events if _is_json(r.value)}
    row = run.finish([fault], partitions=lambda r: partition_of.get(r["trigger_event_id"]) in owned)
    row.notes.append(f"the killed worker owned partitions {sorted(owned)}; the second one (pid {second.pid}) "
                     "took them over")
    return row


def broker_restart(setup: Setup, outage: float = 15.0) -> Row:
    """The broker stops for ``outage`` seconds under a running worker, then comes back."""
    run = Run(setup, "broker-restart")
    half = setup.events_per_user // 2
    run.start()
    feeder = run.feed(run.plan(half))
    feeder.join()
    feeder.close()
    run.wait_answered()
    log_before = run.first.log_path.stat().st_size
    lines_before = run.first.log().count("\n")
    _broker(setup, "stop")
    time.sleep(outage)
    _broker(setup, "start")
    back = time.time()
    feeder = run.feed(run.plan(setup.events_per_user - half))
    feeder.join()
    feeder.close()
    run.wait_answered()
    lines = run.first.log().count("\n") - lines_before
    size = run.first.log_path.stat().st_size - log_before
    row = run.finish([back])
    row.notes.append(f"{outage:.0f}s outage: the worker wrote {lines} log lines ({size / 1024:.1f} KiB) "
                     "from the stop to the end")
    return row


def sigterm_broker_down(setup: Setup) -> Row:
    """SIGTERM while the broker is down: the worker ends in time; its successor loses nothing."""
    run = Run(setup, "sigterm-broker-down")
    half = setup.events_per_user // 2
    run.start()
    feeder = run.feed(run.plan(half))
    feeder.join()
    feeder.close()
    _broker(setup, "stop")
    try:
        took = run.stop(run.first)
    finally:
        _broker(setup, "start")
    code = run.first.returncode()
    back = time.time()
    run.start()
    feeder = run.feed(run.plan(setup.events_per_user - half))
    feeder.join()
    feeder.close()
    run.wait_answered()
    row = run.finish([back])
    row.notes.append(f"SIGTERM with the broker down: the worker ended after {took:.1f}s with exit code {code}"
                     f"{' (SIGKILL needed)' if run.first.forced else ''}")
    if run.first.forced:
        row.exits += 1
    return row


SCENARIOS: dict[str, Callable[[Setup], Row]] = {
    "hostile": hostile,
    "kill9-memory": lambda s: kill9(s, "memory://"),
    "kill9-rocksdb": lambda s: kill9(s, "rocksdb://"),
    "kill9-static": lambda s: kill9(s, "memory://", name="kill9-static", instance_id="chaos-worker-1"),
    "failover-rocksdb": failover,
    "join-kill": join_and_kill,
    "broker-restart": broker_restart,
    "sigterm-broker-down": sigterm_broker_down,
}
BROKER_SCENARIOS = ("broker-restart", "sigterm-broker-down")


def _sleep_until(feeder: Feeder, seconds: float) -> None:
    """Until the feeder has been sending for about ``seconds`` (or is done)."""
    target = int(seconds * feeder.rate)
    while feeder.sent < target and not feeder.done:
        time.sleep(0.05)


def _owned_partitions(worker: WorkerProcess) -> set[int]:
    owned = set()
    for line in worker.metrics().splitlines():
        if line.startswith("streamrec_consumer_lag_messages{"):
            owned.add(int(line.split('partition="', 1)[1].split('"', 1)[0]))
    return owned


def _is_json(value: bytes | None) -> bool:
    try:
        return isinstance(json.loads(value), dict) if value is not None else False
    except ValueError:
        return False


def _broker(setup: Setup, action: str) -> None:
    if setup.kafka_script is None:
        raise RuntimeError("the broker scenarios need deploy/local/kafka.sh (a local broker it controls)")
    subprocess.run(["bash", str(setup.kafka_script), action], check=True, stdout=subprocess.DEVNULL)


def table(rows: list[Row]) -> str:
    """The chaos table, one line per scenario."""
    lines = []
    header = ["scenario", "events", "users", "lost", "applied twice", "wrong seqs", "dup records", "unanswered",
              "stale|in-history", "dead letters", "recovery s", "worker exits", "ok"]
    cells = []
    for row in rows:
        v = row.verdict
        cells.append([row.scenario, v.events, v.users, v.lost, v.applied_twice, v.wrong_sequences,
                      v.duplicate_records, v.unanswered, f"{v.stale_records}|{v.history_in_list}",
                      f"{v.dead_letters}" + (f" ({v.hostile_missed} missed)" if v.hostile_missed else ""),
                      ", ".join(f"{s:.1f}" for s in row.recovery_s) or "-", row.exits, "yes" if row.ok else "NO"])
    widths = [max(len(str(x)) for x in column) for column in zip(header, *cells)]
    for line in [header, *cells]:
        lines.append(" | ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(line, widths))))
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def run_chaos(settings: Settings, args: argparse.Namespace) -> int:
    """`streamrec chaos`: run the scenarios and print the table; exit 1 when any scenario found a fault."""
    from streams.demo import KAFKA_SCRIPT, ensure_kafka
    from streams.tools.endurance import restore_time, soak
    from streams.tools.models import find_or_train

    work: Path = args.workdir
    names = list(SCENARIOS) if args.scenarios == "all" else [n.strip() for n in args.scenarios.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"streamrec chaos: unknown scenario(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(SCENARIOS)} or 'all'")
    ensure_kafka(settings.kafka_bootstrap)
    model = find_or_train(settings.model_dir, work, 400, 300, epochs=5)
    local_broker = subprocess.run(["bash", str(KAFKA_SCRIPT), "status"], capture_output=True).returncode == 0
    setup = Setup(settings.kafka_bootstrap, model, work / "runs", users=args.users,
                  events_per_user=args.events_per_user, rate=args.rate, hostile=args.hostile,
                  kafka_script=KAFKA_SCRIPT if local_broker else None)
    rows = []
    for name in names:
        if name in BROKER_SCENARIOS and setup.kafka_script is None:
            print(f"skipping {name}: the broker at {settings.kafka_bootstrap} is not one deploy/local/kafka.sh runs")
            continue
        print(f"==> {name}", flush=True)
        started = time.monotonic()
        row = SCENARIOS[name](setup)
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
        print(f"\n==> soak: {args.soak_minutes} min at {args.soak_rate} events/s over {args.soak_users} users",
              flush=True)
        result = soak(setup, args.soak_minutes, args.soak_rate, args.soak_users)
        extra.append(result.summary())
        print(extra[-1])
    if args.json:
        args.json.write_text(json.dumps({"rows": [_row_json(r) for r in rows], "extra": extra}, indent=2))
    return 0 if all(r.ok for r in rows) else 1


def _row_json(row: Row) -> dict:
    data = {k: v for k, v in vars(row.verdict).items() if k != "problems"}
    return {"scenario": row.scenario, **data, "recovery_s": row.recovery_s, "worker_exits": row.exits,
            "ok": row.ok, "notes": row.notes, "problems": row.verdict.problems}

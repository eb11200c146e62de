"""The chaos harness: a scenario's own topics, workers, events and the oracle's verdict."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from serving.artifact import load_artifact, resolve_version
from streams.app import HOUSEKEEPING_SECONDS, TABLE_NAME
from streams.sequences import is_watermark_key
from streams.tools.chaos.oracle import Oracle, Verdict
from streams.tools.kafka_io import Feeder, Record, Tail, read_topic
from streams.tools.worker_process import WorkerProcess, metric_value

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
    local_broker: bool = False  # deploy/local/kafka.sh runs the broker: the broker scenarios may stop it
    seed: int = 5
    timeout: float = 180.0  # for the last answers of a scenario
    keep_topics: bool = False  # else each scenario's topics are deleted once it is judged


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
        first = WorkerProcess.isolated(
            setup.bootstrap, setup.model_dir, setup.workdir / name, prefix=f"chaos-{name}", top_k=10, **settings
        )
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
        self.keep: int | None = None  # records the tail holds (None: all, for the oracle)

    # --- events --------------------------------------------------------------------------------------------
    def plan(self, per_user: int) -> list[Message]:
        """The next ``per_user`` valid events of every user, interleaved (each user's in order)."""
        messages = []
        for _ in range(per_user):
            for user in self.rng.sample(self.users, len(self.users)):
                if not self.pool[user]:
                    continue
                item = self.pool[user].pop()
                event_id = f"{user}-{len(self.oracle.planned)}"
                messages.append((user.encode(), self.oracle.plan(user, item, event_id, time.time())))
        return messages

    def feed(self, messages: list[Message], rate: float | None = None) -> Feeder:
        return Feeder(
            self.setup.bootstrap, self.first.settings.events_topic, messages, self.setup.rate if rate is None else rate
        ).start()

    def finish_feeding(self, feeder: Feeder) -> None:
        """Wait for the feeder to send everything, close it, and wait for every user's last answer."""
        feeder.join()
        feeder.close()
        self.wait_answered()

    # --- workers -------------------------------------------------------------------------------------------
    def start(self, worker: WorkerProcess | None = None) -> WorkerProcess:
        worker = worker or self.first
        self.check_alive()
        worker.start()
        if worker not in self.workers:
            self.workers.append(worker)
        if self.tail is None:
            self.tail = Tail(self.setup.bootstrap, self.first.settings.recommendations_topic, self.keep)
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
            if (
                texts
                and all("streamrec_consumer_lag_messages{" in t for t in texts)
                and sum(metric_value(t, "streamrec_consumer_lag_messages") for t in texts) == 0
            ):
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
    def close(self) -> None:
        """Stop every worker still running and the tail (also after a scenario failed half-way)."""
        for worker in self.workers:
            if worker.alive():
                self.stop(worker)
        if self.tail is not None:
            self.tail.close()
            self.tail = None

    def discard(self) -> None:
        """Once the run is judged (or failed): stop what still runs and, unless the setup keeps them, delete the
        run's topics (repeated runs would otherwise pile up thousands of partitions on a local broker)."""
        self.close()
        if not self.setup.keep_topics:
            self.first.delete_topics()

    def finish(self, faults: list[float] | None = None, partitions: Callable[[dict], bool] | None = None) -> Row:
        """Stop the workers, read every topic back and judge. ``faults``: moments to measure recovery from."""
        self.close()
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
            after = [
                r["produced_ts"]
                for r in recommendations
                if r["produced_ts"] > moment and (partitions is None or partitions(r))
            ]
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

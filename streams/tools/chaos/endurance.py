"""Long runs for the chaos command: a soak with memory sampling, and the restore time of a large table."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import NewTopic

from streams.app import TABLE_NAME
from streams.kafka_admin import admin_client
from streams.tools.chaos.harness import Run, Setup
from streams.tools.kafka_io import Feeder


@dataclass
class Soak:
    """RSS of the worker over a run at a steady rate."""

    rate: float
    users: int
    minutes: float
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (seconds, RSS MiB, events sent)
    answered_all: bool = False

    def summary(self) -> str:
        if not self.samples:
            return "no samples"
        first_full = next((s for s in self.samples if s[2] >= self.users), self.samples[-1])
        after = [s for s in self.samples if s[0] >= first_full[0]]
        lines = [
            f"soak: {self.minutes:.0f} min at {self.rate:.0f} events/s over {self.users} users; RSS sampled "
            f"every 10 s: start {self.samples[0][1]:.0f} MiB, when every user had been seen "
            f"({first_full[0]:.0f} s) {first_full[1]:.0f} MiB, end {self.samples[-1][1]:.0f} MiB, "
            f"max {max(s[1] for s in self.samples):.0f} MiB"
        ]
        last_third = self.samples[-max(2, len(self.samples) // 3) :]
        for label, part in (("after every user was seen", after), ("over the last third", last_third)):
            if len(part) >= 2:
                span = (part[-1][0] - part[0][0]) / 60
                slope = (part[-1][1] - part[0][1]) / max(span, 1e-9)
                lines.append(f"  {label}: {slope:+.2f} MiB/min over {span:.1f} min")
        lines.append("  every user's last event answered: " + ("yes" if self.answered_all else "NO"))
        return "\n".join(lines)


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak(setup: Setup, minutes: float, rate: float, users: int, store: str = "rocksdb://") -> Soak:
    """Events at ``rate`` for ``minutes`` over ``users`` users (each user's items drawn from the catalog)."""
    run = Run(setup, "soak", store=store)
    run.keep = 10_000  # the soak checks only the answer to its last event; millions of records would not fit
    try:
        return _soak(run, minutes, rate, users)
    finally:
        run.discard()


def _soak(run: Run, minutes: float, rate: float, users: int) -> Soak:
    setup = run.setup
    rng = random.Random(setup.seed)
    total = int(minutes * 60 * rate)
    names = [f"soak-u{n}" for n in range(users)]

    def messages():
        for number in range(total):
            user = names[number % users] if number < users else rng.choice(names)
            item = rng.choice(run.catalog)
            yield (
                user.encode(),
                json.dumps(
                    {
                        "user_id": user,
                        "item_id": item,
                        "event_type": "view",
                        "ts": time.time(),
                        "event_id": f"soak-{number}",
                    }
                ).encode(),
            )

    result = Soak(rate, users, minutes)
    worker = run.start()
    feeder = Feeder(setup.bootstrap, run.first.settings.events_topic, messages(), rate).start()
    started = time.monotonic()
    while not feeder.done:
        result.samples.append((time.monotonic() - started, rss_mib(worker.pid), feeder.sent))
        print(
            f"  {result.samples[-1][0]:6.0f} s  RSS {result.samples[-1][1]:7.1f} MiB  {feeder.sent:>9} events sent",
            flush=True,
        )
        time.sleep(10)
    feeder.close()
    last = f"soak-{total - 1}"
    try:
        assert run.tail is not None
        run.tail.wait(
            lambda records: any(r.get("trigger_event_id") == last for r in records[-2000:]),
            300,
            "the last event's answer",
        )
        result.answered_all = True
    except TimeoutError:
        result.answered_all = False
    run.check_alive()
    return result


def restore_time(setup: Setup, users: int, items_per_user: int = 10) -> str:
    """Seconds for a RocksDB worker with an empty data directory to restore ``users`` sequences and serve."""
    run = Run(setup, "restore", store="rocksdb://")
    try:
        return _restore_time(run, users, items_per_user)
    finally:
        run.discard()


def _restore_time(run: Run, users: int, items_per_user: int) -> str:
    setup = run.setup
    settings = run.first.settings
    changelog = f"{settings.app_id}-{TABLE_NAME}-changelog"
    admin = admin_client(setup.bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(
                    changelog,
                    settings.partitions,
                    settings.replication_factor,
                    topic_configs={"cleanup.policy": "compact"},
                )
            ]
        )
    finally:
        admin.close()
    producer = KafkaProducer(
        bootstrap_servers=setup.bootstrap.split(","),
        linger_ms=20,
        batch_size=512 * 1024,
        acks=1,
        compression_type=None,
        client_id="streamrec-restore",
    )
    rng = random.Random(setup.seed)
    started = time.monotonic()
    for number in range(users):
        items = rng.sample(run.catalog, min(items_per_user, len(run.catalog)))
        producer.send(
            changelog, key=f"restore-u{number}".encode(), value=json.dumps({"items": items, "offset": -1}).encode()
        )
        if number and number % 200_000 == 0:
            print(f"  {number} sequences written to {changelog}", flush=True)
    producer.flush()
    producer.close()
    wrote = time.monotonic() - started
    run.start()
    begun = time.time()
    probe = run.plan(1)[:1]
    run.feed(probe, rate=0).join()
    run.wait_serving(since=0.0, timeout=1800)
    served = min(r["produced_ts"] for r in run.tail.snapshot()) - begun
    log = run.first.log()
    recovered = "Recovery complete" in log
    return (
        f"restore: {users} sequences of {items_per_user} items written to the changelog in {wrote:.0f} s; "
        f"a RocksDB worker with an empty data directory served its first event {served:.1f} s after it was "
        f"started (process start, model load, group join, restore){'' if recovered else ' [no recovery log]'}"
    )

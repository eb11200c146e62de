"""The chaos scenarios: faults injected into real workers and the real broker while events flow."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from streams.tools.chaos.harness import Message, Row, Run, Setup
from streams.tools.chaos.hostile import KINDS, hostile_messages
from streams.tools.kafka_io import Feeder, read_topic
from streams.tools.local_kafka import control_broker
from streams.tools.worker_process import WorkerProcess, metric_value


def hostile(run: Run) -> Row:
    """Hostile payloads of every kind among valid events: each is dead-lettered, nothing stops."""
    setup = run.setup
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
    run.finish_feeding(feeder)
    run.wait_drained()
    counted = metric_value(run.first.metrics(), "streamrec_events_invalid_total")
    row = run.finish()
    row.verdict.metric_mismatch = int(abs(counted - row.verdict.dead_letters))
    if row.verdict.metric_mismatch:
        row.notes.append(
            f"streamrec_events_invalid_total says {counted:.0f}, the dead-letter topic holds {row.verdict.dead_letters}"
        )
    row.notes.append(f"{setup.hostile} hostile payloads of {min(setup.hostile, len(KINDS))} kinds")
    return row


def kill9(run: Run, kills: int = 3) -> Row:
    """kill -9 the worker ``kills`` times while events flow; each time a new one starts on the same data."""
    setup = run.setup
    messages = run.plan(setup.events_per_user)
    run.start()
    feeder = run.feed(messages, rate=min(setup.rate, len(messages) / (kills * 12 + 6)))  # events during every kill
    faults = []
    for _ in range(kills):
        run.wait_serving(since=faults[-1] if faults else 0.0)
        time.sleep(1.5)  # mid-stream, with uncommitted work
        faults.append(run.kill(run.first))
        run.start()
    run.finish_feeding(feeder)
    return run.finish(faults)


def failover(run: Run) -> Row:
    """RocksDB: kill -9, restart on the same data, kill -9 again, then a worker with a fresh data directory."""
    setup = run.setup
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
    run.finish_feeding(feeder)
    row = run.finish(faults)
    row.notes.append("the last worker restored everything from the changelog into an empty data directory")
    return row


def join_and_kill(run: Run) -> Row:
    """A second worker joins the group mid-stream, then the first is killed: the second takes everything."""
    setup = run.setup
    messages = run.plan(setup.events_per_user)
    run.start()
    feeder = run.feed(messages)
    duration = len(messages) / setup.rate
    _sleep_until(feeder, duration / 4)
    second = run.start(run.first.sibling("second"))
    _sleep_until(feeder, duration * 2 / 3)
    owned = _settled_ownership(run.first, second)
    held = 0.0
    if not owned:  # the join is still under way: hold the last third back for after the kill, however long it takes
        feeder.pause()
        since = time.monotonic()
        owned = _after_the_join(run, second)
        held = time.monotonic() - since
        feeder.resume()
        _sleep_until(feeder, duration * 3 / 4)  # mid-stream again, with uncommitted work
    fault = run.kill(run.first)
    run.finish_feeding(feeder)
    events = read_topic(setup.bootstrap, run.first.settings.events_topic)
    partition_of = {json.loads(r.value).get("event_id"): r.partition for r in events if _is_json(r.value)}
    row = run.finish([fault], partitions=lambda r: partition_of.get(r["trigger_event_id"]) in owned)
    row.notes.append(
        f"the killed worker owned partitions {sorted(owned)}; the second one (pid {second.pid}) took them over"
    )
    if held:
        row.notes.append(f"the join had not settled two thirds into the feed: the feed was held for {held:.1f}s")
    return row


def broker_restart(run: Run, outage: float = 15.0) -> Row:
    """The broker stops for ``outage`` seconds under a running worker, then comes back."""
    setup = run.setup
    half = setup.events_per_user // 2
    run.start()
    feeder = run.feed(run.plan(half))
    run.finish_feeding(feeder)
    log_before = run.first.log_path.stat().st_size
    lines_before = run.first.log().count("\n")
    _broker(setup, "stop")
    time.sleep(outage)
    _broker(setup, "start")
    back = time.time()
    feeder = run.feed(run.plan(setup.events_per_user - half))
    run.finish_feeding(feeder)
    lines = run.first.log().count("\n") - lines_before
    size = run.first.log_path.stat().st_size - log_before
    row = run.finish([back])
    row.notes.append(
        f"{outage:.0f}s outage: the worker wrote {lines} log lines ({size / 1024:.1f} KiB) from the stop to the end"
    )
    return row


def sigterm_broker_down(run: Run) -> Row:
    """SIGTERM while the broker is down: the worker ends in time; its successor loses nothing."""
    setup = run.setup
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
    run.finish_feeding(feeder)
    row = run.finish([back])
    row.notes.append(
        f"SIGTERM with the broker down: the worker ended after {took:.1f}s with exit code {code}"
        f"{' (SIGKILL needed)' if run.first.forced else ''}"
    )
    if run.first.forced:
        row.exits += 1
    return row


# name -> (worker settings, the scenario)
SCENARIOS: dict[str, tuple[dict[str, object], Callable[[Run], Row]]] = {
    "hostile": ({}, hostile),
    "kill9-memory": ({"store": "memory://"}, kill9),
    "kill9-rocksdb": ({"store": "rocksdb://"}, kill9),
    "kill9-static": ({"store": "memory://", "instance_id": "chaos-worker-1"}, kill9),
    "failover-rocksdb": ({"store": "rocksdb://"}, failover),
    "join-kill": ({}, join_and_kill),
    "broker-restart": ({}, broker_restart),
    "sigterm-broker-down": ({}, sigterm_broker_down),
}
BROKER_SCENARIOS = ("broker-restart", "sigterm-broker-down")


def run_scenario(name: str, setup: Setup) -> Row:
    """Run one scenario in its own topics and consumer group; its workers are stopped whatever happens."""
    settings, scenario = SCENARIOS[name]
    run = Run(setup, name, **settings)
    try:
        return scenario(run)
    finally:
        run.discard()


def _sleep_until(feeder: Feeder, seconds: float) -> None:
    """Until the feeder has been sending for about ``seconds`` (or is done)."""
    target = int(seconds * feeder.rate)
    while feeder.sent < target and not feeder.done:
        time.sleep(0.05)


def _after_the_join(run: Run, second: WorkerProcess) -> set[int]:
    """The first worker's partitions once the join's rebalance has settled, waiting up to the run's timeout.

    Read in the middle of the rebalance, the first worker owned none, and the kill had no partitions to measure a
    recovery on (the row failed with an infinite recovery although nothing was lost). Waiting only while the
    short test's feed lasted (8 s) was not enough on a slow day, or when a takeover's seek waited for a fetch.
    """
    deadline = time.monotonic() + run.setup.timeout
    while not (owned := _settled_ownership(run.first, second)) and time.monotonic() < deadline:
        run.check_alive()
        time.sleep(0.1)
    return owned


def _settled_ownership(first: WorkerProcess, second: WorkerProcess) -> set[int]:
    """The first worker's partitions if both workers own some (the join has settled), else the empty set."""
    owned = _owned_partitions(first)
    return owned if owned and _owned_partitions(second) else set()


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
    if not setup.local_broker:
        raise RuntimeError("the broker scenarios need the broker that deploy/local/kafka.sh runs")
    control_broker(action)

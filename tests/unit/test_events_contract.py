"""One events contract: the training loader keeps exactly the events the worker applies, in the same order."""

import asyncio
import json
import random
from datetime import UTC, datetime

import orjson
from prometheus_client import CollectorRegistry

from encoders.data import load_events_jsonl
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.records import DEFAULT_EVENT_TYPES, DEFAULT_MAX_EVENT_BYTES, InvalidEvent, parse_event
from streams.sequences import is_watermark_key
from streams.settings import Settings
from streams.source import Source
from streams.tools.chaos.hostile import KINDS, hostile_messages
from tests.fakes import FakeEngine, FakeRegistry, Sink


def test_the_trainer_keeps_what_the_worker_applies(tmp_path):
    rng = random.Random(4)
    users, items = [f"u{n}" for n in range(6)], [f"i{n}" for n in range(40)]
    lines = []
    for n in range(120):
        user = rng.choice(users)
        event = {
            "user_id": user,
            "item_id": rng.choice(items),
            "event_type": rng.choice(["view", "purchase"]),
            "ts": (1_700_000_000 + n) if n % 3 else datetime.fromtimestamp(1_700_000_000 + n, UTC).isoformat(),
            "event_id": f"e{n}",
        }
        lines.append((user.encode(), json.dumps(event).encode()))
    for _, key, value in hostile_messages(len(KINDS) * 2, users, items, seed=2):
        # the lines that break the contract themselves (a file has no Kafka key to get wrong)
        if value is not None and b"\n" not in value and b"\r" not in value and not _valid(value):
            lines.insert(rng.randrange(len(lines)), (key, value))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(value + b"\n" for _, value in lines if value.strip()))

    trained = load_events_jsonl(path)

    table = {}
    pipeline = Pipeline(
        Settings(max_len=200, metrics_port=0),
        FakeRegistry(FakeEngine(items)),
        Metrics.create(CollectorRegistry()),
        table,
        Sink().many,
        Sink(),
    )

    async def replay():  # keyed as `streamrec produce` keys a file's events: by their user_id, in batches
        records = [
            (Source("events", 0, offset, _producer_key(value), None), value)
            for offset, value in enumerate(value for _, value in lines if value.strip())
        ]
        for start in range(0, len(records), 16):
            await pipeline.ingest(records[start : start + 16])

    asyncio.run(replay())
    worker = {
        key.decode(): tuple(orjson.loads(value)["items"]) for key, value in table.items() if not is_watermark_key(key)
    }
    assert dict(zip(trained.user_ids, trained.sequences, strict=True)) == worker
    assert len(lines) > 160 and sum(map(len, worker.values())) == 120, "valid events kept, hostile ones refused"


def _valid(value):
    try:
        parse_event(value, DEFAULT_EVENT_TYPES, DEFAULT_MAX_EVENT_BYTES)
    except InvalidEvent:
        return False
    return True


def _producer_key(value):
    try:
        event = json.loads(value)
    except (ValueError, RecursionError):
        return None
    user = event.get("user_id") if isinstance(event, dict) else None
    return str(user).encode("utf-8", "surrogatepass") if isinstance(user, (str, int)) else None

"""Replay an event log into Kafka at a chosen rate (JSONL events, SASRec `user item`, ML `ratings.dat`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from kafka import KafkaProducer
from tqdm import tqdm

from streams.kafka_admin import ensure_topics

logger = logging.getLogger(__name__)

FORMATS = ("auto", "jsonl", "sasrec", "ratings")


def detect_format(path: Path) -> str:
    """Guess the format of an event file from its first non-empty line."""
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                text = line.decode("latin-1").strip()
                if text.startswith("{"):
                    return "jsonl"
                if "::" in text:
                    return "ratings"
                if len(text.split()) == 2:
                    return "sasrec"
                break
    raise ValueError(f"cannot tell the format of {path}: pass --format jsonl|sasrec|ratings")


def read_events(path: Path, fmt: str = "auto") -> Iterator[dict]:
    """Events (dicts of the `events` contract) from a file, in file order."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: create one with `streamrec simulate --out DIR`")
    fmt = detect_format(path) if fmt == "auto" else fmt
    with path.open("r", encoding="latin-1" if fmt == "ratings" else "utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            if fmt == "jsonl":
                yield json.loads(line)
            elif fmt == "sasrec":
                user, item = line.split()
                yield {"user_id": user, "item_id": item, "event_type": "click", "ts": float(number)}
            elif fmt == "ratings":
                user, item, _rating, ts = line.split("::")
                yield {"user_id": user, "item_id": item, "event_type": "click", "ts": float(ts)}
            else:
                raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")


def count_lines(path: Path) -> int:
    """Number of non-empty lines (for the progress bar)."""
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def produce(
    bootstrap: str,
    topic: str,
    events: Iterator[dict],
    rate: float = 0.0,
    limit: int | None = None,
    restamp: bool = True,
    total: int | None = None,
    progress: bool = True,
    partitions: int = 4,
) -> int:
    """Send events keyed by user id; ``rate`` events/s (0 = as fast as possible).

    Args:
        restamp: replace ``ts`` with the send time, so latency is measured from now.
        partitions: partition count if the topic has to be created (never left to broker auto-creation).

    Returns:
        The number of events sent.
    """
    ensure_topics(bootstrap, {topic: partitions}, strict=False)  # also: a clear error when no broker answers
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        linger_ms=5,
        acks=1,
        batch_size=256 * 1024,
        client_id="streamrec-produce",
    )
    sent = 0
    started = time.monotonic()
    bar = tqdm(
        total=min(total or limit or 0, limit or total or 0) or None,
        unit="ev",
        disable=not progress,
        desc=f"produce -> {topic}",
    )
    try:
        for event in events:
            if limit is not None and sent >= limit:
                break
            if rate > 0:
                wait = started + sent / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            if restamp:
                event = {**event, "ts": time.time()}
            producer.send(topic, key=str(event["user_id"]).encode(), value=json.dumps(event).encode())
            sent += 1
            bar.update(1)
        producer.flush()
    finally:
        bar.close()
        producer.close()
    elapsed = time.monotonic() - started
    logger.info("sent %d events to %s in %.1fs (%.0f/s)", sent, topic, elapsed, sent / max(elapsed, 1e-9))
    return sent

"""Tail the `recommendations` topic (or any JSON topic) and print one record per line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from streams.kafka_admin import unavailable


def records(
    bootstrap: str,
    topic: str,
    from_beginning: bool = False,
    timeout: float | None = None,
    limit: int | None = None,
) -> Iterator[dict]:
    """Decoded JSON records from ``topic`` until ``limit`` records or ``timeout`` idle-free seconds pass."""
    try:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap.split(","),
            group_id=None,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False,
            bootstrap_timeout_ms=10_000,
            client_id="streamrec-consume",
        )
    except KafkaError as exc:
        raise unavailable(bootstrap, exc) from None
    deadline = time.monotonic() + timeout if timeout else None
    seen = 0
    try:
        while deadline is None or time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
            for messages in batch.values():
                for message in messages:
                    yield json.loads(message.value)
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
    finally:
        consumer.close()

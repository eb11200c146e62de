"""Where an `events` record came from: what the worker needs of a Kafka message besides its value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)  # built per record: not frozen (see streams.records.Event); never mutated
class Source:
    """The record's topic, partition, offset, key and timestamp (epoch seconds, when the broker set one)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp: float | None

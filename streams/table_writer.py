"""A batch's table writes for one partition: into faust's store, and to the changelog in one request."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust import streams as faust_streams

from streams.bulk_send import BulkSender


class TableWriter:
    """Writes values of one partition the way faust's table does, but all at once.

    A faust table sends one changelog record per assignment, each through its own buffer and coroutine;
    here the values go into the table's store and their changelog records (serialized by the table's own
    changelog topic, so faust's recovery reads them as its own) to the partition's changelog in one batch.
    The store writes go to ``partition`` whatever faust's current event is.
    """

    def __init__(self, table: faust.Table, producer: Callable[[], AIOKafkaProducer]) -> None:
        self._table = table
        self._changelog = table.changelog_topic
        self._sender = BulkSender(producer, self._changelog.get_topic_name())

    async def __call__(self, partition: int, values: Mapping[bytes, Any]) -> None:
        store = self._table.data
        key_serializer, value_serializer = self._table.key_serializer, self._table.value_serializer
        records = []
        with _at_partition(partition):
            for key, value in values.items():
                store[key] = value
                records.append(
                    (
                        self._changelog.prepare_key(key, key_serializer)[0],
                        self._changelog.prepare_value(value, value_serializer)[0],
                    )
                )
        await self._sender.to_partition(partition, records)


class _Message:
    __slots__ = ("partition",)

    def __init__(self, partition: int) -> None:
        self.partition = partition


class _PartitionEvent:
    """What faust's stores read of the current event: ``event.message.partition``."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


@contextmanager
def _at_partition(partition: int) -> Iterator[None]:
    event = _PartitionEvent(partition)  # referenced here while the context lasts (faust keeps a weak reference)
    token = faust_streams._current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)

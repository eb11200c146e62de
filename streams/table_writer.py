"""A batch's table writes for one partition: into faust's store, and to the changelog in one request."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import faust
from aiokafka import AIOKafkaProducer

from streams.bulk_send import BulkSender


class TableWriter:
    """Writes values of one partition the way faust's table does, but all at once.

    A faust table sends one changelog record per assignment, each through its own buffer and coroutine;
    here the values go into the table's store and their changelog records (serialized by the table's own
    changelog topic, so faust's recovery reads them as its own) to the partition's changelog in one batch.
    Call it with the partition's event as faust's current event (the store writes to that partition).
    """

    def __init__(self, table: faust.Table, producer: Callable[[], AIOKafkaProducer]) -> None:
        self._table = table
        self._changelog = table.changelog_topic
        self._sender = BulkSender(producer, self._changelog.get_topic_name())

    def read(self, key: bytes) -> bytes | None:
        """The value in the store the writer writes to (None: none), without faust's table layer (its hooks and
        monitor, a twentieth of the event loop at the pipeline ceiling). Same context as for writing."""
        return self._table.data.get(key)

    async def __call__(self, partition: int, values: Mapping[bytes, bytes]) -> None:
        store = self._table.data
        key_serializer, value_serializer = self._table.key_serializer, self._table.value_serializer
        records = []
        for key, value in values.items():
            store[key] = value
            records.append(
                (
                    self._changelog.prepare_key(key, key_serializer)[0],
                    self._changelog.prepare_value(value, value_serializer)[0],
                )
            )
        await self._sender.to_partition(partition, records)

"""Many records to one topic in one request per partition: aiokafka's batch API, keyed like its partitioner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

Records = Sequence[tuple[bytes, bytes]]

HASHES_KEPT = 100_000  # keys whose hash is remembered (about 10 MB); beyond it the memory starts afresh


class KeyHashes:
    """The Kafka clients' key hash (murmur2, positive), remembered per key: aiokafka computes it in Python, a
    couple of microseconds per record, and a worker publishes for the same users again and again."""

    def __init__(self, kept: int = HASHES_KEPT) -> None:
        self._kept = kept
        self._hashes: dict[bytes, int] = {}

    def partition(self, key: bytes, partitions: Sequence[int]) -> int:
        """The partition of ``key`` among ``partitions`` (all of the topic's, sorted), as aiokafka's default
        partitioner chooses it."""
        found = self._hashes.get(key)
        if found is None:
            if len(self._hashes) >= self._kept:
                self._hashes.clear()
            found = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return partitions[found % len(partitions)]


class BulkSender:
    """Appends records to per-partition batches and hands each batch to the producer in one step.

    The same partition per key as a plain ``send`` (murmur2, as the Java and Python clients do), without the
    per-record coroutine of ``send``: the cost of publishing a batch of recommendations is one call per
    partition. Ordering per key is kept (one batch per partition, records in the given order).

    Args:
        producer: returns the started aiokafka producer (faust's, so commits flush what was sent here).
        topic: where the records go.
    """

    def __init__(self, producer: Callable[[], AIOKafkaProducer], topic: str) -> None:
        self._producer = producer
        self.topic = topic
        self._hashes = KeyHashes()

    async def __call__(self, records: Records) -> list[asyncio.Future]:
        """Hand ``records`` (key, value) to the producer; the returned futures complete on delivery."""
        if not records:
            return []
        producer = self._producer()
        partitions = sorted(await producer.partitions_for(self.topic))
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        partition = self._hashes.partition
        for key, value in records:
            by_partition.setdefault(partition(key, partitions), []).append((key, value))
        delivered = []
        for partition, items in by_partition.items():
            delivered.extend(await self._send(producer, partition, items))
        return delivered

    async def to_partition(self, partition: int, records: Records) -> list[asyncio.Future]:
        """Like calling it, but every record goes to ``partition`` (e.g. the changelog partition of a table's)."""
        return await self._send(self._producer(), partition, records) if records else []

    async def _send(self, producer: AIOKafkaProducer, partition: int, records: Records) -> list[asyncio.Future]:
        delivered = []
        batch = producer.create_batch()
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                delivered.append(await producer.send_batch(batch, self.topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        delivered.append(await producer.send_batch(batch, self.topic, partition=partition))
        return delivered

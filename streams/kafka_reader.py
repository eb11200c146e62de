"""Read a range of offsets of one partition again, with kafka-python (blocking: run it in a thread)."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from streams.source import Source


def fetch_range(
    bootstrap: str, topic: str, partition: int, start: int, end: int, timeout: float = 30.0
) -> list[tuple[Source, bytes | None]]:
    """The records of ``topic[partition]`` at offsets ``[start, end)`` (fewer when some no longer exist).

    Raises:
        TimeoutError: the broker did not deliver them within ``timeout`` seconds.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="streamrec-refetch",
        max_partition_fetch_bytes=4 << 20,
        request_timeout_ms=int(timeout * 1000) + 5000,
    )
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        found: list[tuple[Source, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}[{partition}] {start}..{end - 1} not read within {timeout:.0f}s")
            for message in consumer.poll(timeout_ms=500).get(tp, []):
                if start <= message.offset < end:
                    found.append(
                        (
                            Source(
                                topic,
                                partition,
                                message.offset,
                                message.key,
                                message.timestamp / 1000.0 if message.timestamp else None,
                            ),
                            message.value,
                        )
                    )
        return found
    finally:
        consumer.close()

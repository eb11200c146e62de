"""Kafka clients for the tools: read a topic back whole, and feed messages at a steady rate."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from streams.kafka_admin import unavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as read back."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # seconds


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Record]:
    """Every record of ``topic`` up to its end offsets at the time of the call, in partition/offset order."""
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            group_id=None,
            enable_auto_commit=False,
            client_id="streamrec-read",
            max_partition_fetch_bytes=4 << 20,
            fetch_max_bytes=64 << 20,
        )
    except KafkaError as exc:
        raise unavailable(bootstrap, exc) from None
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout:.0f}s")
            for tp, messages in consumer.poll(timeout_ms=500, max_records=50_000).items():
                out.extend(
                    Record(m.partition, m.offset, m.key, m.value, m.timestamp / 1000.0)
                    for m in messages
                    if m.offset < end[tp]
                )
        out.sort(key=lambda r: (r.partition, r.offset))
        return out
    finally:
        consumer.close()


class Feeder:
    """Sends (key, value) messages to a topic at ``rate`` per second in a background thread.

    Messages go out in order, one request in flight, acks from all replicas, so each key's messages are
    stored in the order given. ``pause()`` / ``resume()`` hold sending (e.g. while the broker is away).
    """

    def __init__(
        self, bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]], rate: float
    ) -> None:
        self.topic = topic
        self.rate = rate
        self.sent = 0
        self.failed = 0
        self._messages = messages
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            acks="all",
            linger_ms=5,
            max_in_flight_requests_per_connection=1,
            retries=1_000_000,
            max_request_size=2 << 20,
            client_id="streamrec-feeder",
        )
        self._running = threading.Event()
        self._running.set()
        self._held = threading.Event()  # set while paused with everything sent flushed
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="streamrec-feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _on_error(self, exc: BaseException) -> None:
        self.failed += 1
        logger.warning("feeder: a message was not written: %s", exc)

    def _run(self) -> None:
        started, sent_at_start = time.monotonic(), 0
        for key, value in self._messages:
            if self._stopping:
                break
            if not self._running.is_set():
                self._producer.flush()
                self._held.set()
                self._running.wait()
                self._held.clear()
                started, sent_at_start = time.monotonic(), self.sent
            if self.rate > 0:
                wait = started + (self.sent - sent_at_start) / self.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            self._producer.send(self.topic, key=key, value=value).add_errback(self._on_error)
            self.sent += 1
        self._producer.flush()
        self._held.set()

    def pause(self, timeout: float = 60.0) -> None:
        """Stop sending after the current message; returns once everything sent is on the broker."""
        self._running.clear()
        if self._thread.is_alive():
            self._held.wait(timeout)

    def resume(self) -> None:
        self._running.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait until every message was sent and flushed."""
        self._thread.join(timeout)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def close(self) -> None:
        """Stop sending (if still at it) and close the producer."""
        self._stopping = True
        self._running.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self._producer.close(timeout=5)


class Tail:
    """Reads a JSON topic from the beginning in a background thread; ``records`` grows as they arrive.

    ``keep``: hold only about the newest ``keep`` records (a long soak produces millions).
    """

    def __init__(self, bootstrap: str, topic: str, keep: int | None = None) -> None:
        self.records: list[dict] = []
        self._keep = keep
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap.split(","),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            client_id="streamrec-tail",
        )
        self._thread = threading.Thread(target=self._run, name=f"streamrec-tail-{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._consumer.poll(timeout_ms=200)
            except KafkaError as exc:  # e.g. while the broker restarts: keep trying
                logger.debug("tail: %s", exc)
                time.sleep(0.5)
                continue
            for messages in batch.values():
                decoded = [json.loads(m.value) for m in messages]
                with self._lock:
                    self.records.extend(decoded)
                    if self._keep is not None and len(self.records) > 2 * self._keep:
                        del self.records[: -self._keep]

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.records)

    def wait(self, predicate: Callable[[list[dict]], bool], timeout: float, what: str = "records") -> list[dict]:
        """Poll until ``predicate(records)`` holds; raise TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.snapshot()
            if predicate(records):
                return records
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()

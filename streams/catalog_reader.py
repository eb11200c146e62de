"""Reads the whole `items` topic into the live catalog: restored before the worker serves, then followed.

Every worker needs every item whatever partitions of `events` it owns, so the reader is not a member of the
consumer group: it reads all partitions of the compacted topic from the beginning (the newest record per item
is the item; a null value removes it). Invalid records go to the dead-letter topic with a reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from streams.catalog import Catalog
from streams.items import parse_item
from streams.kafka_admin import unavailable
from streams.metrics import Metrics
from streams.records import InvalidEvent, dead_letter, dead_letter_key
from streams.settings import Settings

logger = logging.getLogger(__name__)

POLL_MS = 200


class CatalogReader:
    """Owns one consumer: :meth:`restore` (blocking, at start-up), then :meth:`start` follows in a thread.

    ``after_poll`` runs in that thread after every poll (new items are embedded there, off the event loop).
    """

    def __init__(
        self, settings: Settings, catalog: Catalog, metrics: Metrics, after_poll: Callable[[], object] | None = None
    ) -> None:
        self._settings = settings
        self._after_poll = after_poll
        self._catalog = catalog
        self._metrics = metrics
        self._topic = settings.items_topic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._labels: set[tuple[str, str]] = set()
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap.split(","),
                group_id=None,
                enable_auto_commit=False,
                client_id=f"{settings.app_id}-catalog",
            )
            self._producer = KafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap.split(","), client_id=f"{settings.app_id}-catalog-dlq"
            )
        except KafkaError as exc:
            raise unavailable(settings.kafka_bootstrap, exc) from None
        partitions = self._consumer.partitions_for_topic(self._topic) or set()
        self._tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._tps)
        if self._tps:
            self._consumer.seek_to_beginning(*self._tps)

    def restore(self, timeout: float = 300.0, progress: Callable[[int], None] | None = None) -> int:
        """Apply every record up to the topic's end offsets as of now; returns how many were read."""
        if not self._tps:
            return 0
        end = self._consumer.end_offsets(self._tps)
        deadline = time.monotonic() + timeout
        read = 0
        while any(self._consumer.position(tp) < end[tp] for tp in self._tps):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"restoring the catalog from {self._topic!r} took longer than {timeout:.0f}s ({read} records read)"
                )
            read += self._poll()
            if progress is not None:
                progress(read)
        self._producer.flush(timeout=30)
        return read

    def start(self) -> None:
        """Follow the topic in a daemon thread (new items, availability changes) until :meth:`stop`."""
        self._thread = threading.Thread(target=self._follow, name="streamrec-catalog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._consumer.close()
        self._producer.close(timeout=5)

    def _follow(self) -> None:
        pause = 0.5
        while not self._stop.is_set():
            try:
                if not self._tps:  # the topic had no partitions yet: look again
                    self._reassign()
                self._poll()
                pause = 0.5
            except Exception as exc:  # a broker outage: the catalog keeps its state and catches up afterwards
                logger.warning(
                    "reading %s failed (%s: %s); retrying in %.1fs", self._topic, type(exc).__name__, exc, pause
                )
                self._stop.wait(pause)
                pause = min(5.0, pause * 2)
                continue
            if self._after_poll is not None:
                try:
                    self._after_poll()
                except Exception:  # e.g. a text that breaks the encoder: the catalog and the worker go on
                    logger.exception("updating the models from the catalog failed; retrying after the next poll")
                    self._stop.wait(1.0)

    def _reassign(self) -> None:
        partitions = self._consumer.partitions_for_topic(self._topic) or set()
        self._tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        if self._tps:
            self._consumer.assign(self._tps)
            self._consumer.seek_to_beginning(*self._tps)
        else:
            self._stop.wait(1.0)

    def _poll(self) -> int:
        batches = self._consumer.poll(timeout_ms=POLL_MS, max_records=10_000)
        read = 0
        now = time.time()
        for messages in batches.values():
            for message in messages:
                read += 1
                self._apply(message, now)
        if read:
            self._metrics.catalog_updates.inc(read)
            self._report_counts()
        return read

    def _apply(self, message, now: float) -> None:
        try:
            item = parse_item(message.value, message.key)
        except InvalidEvent as exc:
            self._metrics.catalog_invalid.labels(exc.reason).inc()
            logger.warning("%s[%d]@%d dead-lettered: %s", message.topic, message.partition, message.offset, exc)
            record = dead_letter(message.value, message.key, exc, message.topic, message.partition, message.offset, now)
            self._producer.send(self._settings.dlq_topic, key=dead_letter_key(message.key), value=record)
            return
        item_id = message.key.decode("utf-8", "replace") if item is None else item.item_id
        self._catalog.apply(item_id, item, message.timestamp / 1000.0)
        self._metrics.catalog_update_delay.observe(max(0.0, now - message.timestamp / 1000.0))

    def _report_counts(self) -> None:
        counts = self._catalog.counts()
        labels = {(scenario, "true" if available else "false"): n for (scenario, available), n in counts.items()}
        for gone in self._labels - set(labels):
            self._metrics.catalog_items.labels(*gone).set(0)
        for label, n in labels.items():
            self._metrics.catalog_items.labels(*label).set(n)
        self._labels |= set(labels)

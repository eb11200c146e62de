"""What the agent does with each event and each batch, with its I/O injected."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from typing import Awaitable, Callable, MutableMapping, Sequence

from faust.exceptions import Skip
from faust.streams import current_event

from serving.engine import Engine, ScoredItem
from serving.registry import ModelRegistry
from streams.metrics import Metrics
from streams.records import InvalidEvent, dead_letter, parse_event, recommendation
from streams.sequences import Update, UserHistory, apply_event, latest_per_user
from streams.settings import Settings

logger = logging.getLogger(__name__)

Send = Callable[[bytes, bytes], Awaitable[object]]


class Pipeline:
    """Validates events, updates sequences, scores batches and publishes recommendations.

    Args:
        settings: worker settings.
        registry: holds the engine being served.
        metrics: the metric bundle.
        table: user id (bytes) -> ``UserHistory.to_json()``; a Faust table in the worker.
        send_recommendation: ``(key, value)`` -> awaitable, publishes to `recommendations`.
        send_dead_letter: ``(key, value)`` -> awaitable, publishes to `events-dlq`.
        executor: where model calls run (never on the event loop).
    """

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        metrics: Metrics,
        table: MutableMapping[bytes, dict],
        send_recommendation: Send,
        send_dead_letter: Send,
        executor: Executor,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.table = table
        self._send_recommendation = send_recommendation
        self._send_dead_letter = send_dead_letter
        self._executor = executor
        self._event_types = frozenset(settings.event_types)
        self.processed_offsets: dict[tuple[str, int], int] = {}

    async def ingest(self, raw: bytes) -> Update:
        """Stream processor, run once per event with Faust's current event set.

        Returns the user's update for the batch, or raises ``Skip`` after sending an invalid event
        to the dead-letter topic (Faust acks skipped events).
        """
        event = current_event()
        if event is None:
            raise RuntimeError("Pipeline.ingest must run inside a Faust stream")
        message = event.message
        self.processed_offsets[(message.topic, message.partition)] = message.offset
        try:
            parsed = parse_event(raw, self._event_types, self.settings.max_event_bytes, key=message.key,
                                 require_key=True)
        except InvalidEvent as exc:
            self.metrics.events_invalid.labels(exc.reason).inc()
            logger.warning("dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, exc)
            record = dead_letter(raw, message.key, exc, message.topic, message.partition, message.offset, time.time())
            await self._send_dead_letter(message.key or b"", record)
            raise Skip() from None
        key = parsed.user_id.encode()
        history = UserHistory.from_json(self.table.get(key))
        updated = apply_event(history, parsed.item_id, message.offset, self.settings.max_len)
        if updated is not None:  # None: a replayed event, already in the sequence
            self.table[key] = updated.to_json()
            history = updated
            self.metrics.events.labels(parsed.event_type).inc()
        record_ts = message.timestamp if message.timestamp else time.time()
        return Update(parsed.user_id, history.items, parsed.ts, record_ts, parsed.event_id)

    def _score(self, engine: Engine, sequences: Sequence[tuple[str, ...]]) -> list[list[ScoredItem]]:
        started = time.perf_counter()
        results = engine.recommend(sequences, self.settings.top_k)
        self.metrics.inference.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(sequences))
        return results

    async def publish_batch(self, updates: Sequence[Update]) -> int:
        """Score the newest update of each user in one model call and publish one record per user.

        Returns:
            The number of recommendation records published.
        """
        latest = latest_per_user(updates)
        if not latest:
            return 0
        engine = self.registry.current  # one model per batch, even if a swap happens meanwhile
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, self._score, engine, [u.items for u in latest])
        for update, items in zip(latest, results):
            produced = time.time()
            value = recommendation(update.user_id, items, engine.version, update.event_ts, produced, update.event_id)
            await self._send_recommendation(update.user_id.encode(), value)
            self.metrics.event_to_recommendation.observe(max(0.0, time.time() - update.record_ts))
        self.metrics.recommendations.inc(len(latest))
        return len(latest)

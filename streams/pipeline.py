"""What the worker does with each event and each batch: plain records in, I/O injected, no Faust."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, MutableMapping, Sequence
from concurrent.futures import Executor

from serving.engine import Engine, ScoredItem
from serving.registry import ModelRegistry
from streams.dead_letters import DeadLetter, DeadLetters, Send
from streams.metrics import Metrics
from streams.progress import Progress
from streams.records import INTERNAL_ERROR, InvalidEvent, parse_event, recommendation
from streams.sequences import Update, UserHistory, apply_event, latest_per_user, watermark_key, watermark_of
from streams.settings import Settings
from streams.source import Source

logger = logging.getLogger(__name__)

# fetch(topic, partition, start, end) -> the records at offsets [start, end) as (Source, value); blocking.
Fetch = Callable[[str, int, int, int], "list[tuple[Source, bytes | None]]"]

WATERMARK_EVERY = 100  # events between two watermark writes of a partition (a restart re-reads at most these)


Outcome = Update | DeadLetter | None  # None: a replayed event whose newer successor publishes instead


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
        progress: the newest handled offset per partition (lag, the stall watchdog).
        fetch: reads a range of the events topic again (see :meth:`ingest`); None turns that off.
        fetch_executor: where ``fetch`` runs.
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
        progress: Progress | None = None,
        fetch: Fetch | None = None,
        fetch_executor: Executor | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.table = table
        self._send_recommendation = send_recommendation
        self._dead_letters = DeadLetters(send_dead_letter, metrics.events_invalid)
        self._executor = executor
        self._event_types = frozenset(settings.event_types)
        self.progress = progress or Progress()
        self._fetch = fetch
        self._fetch_executor = fetch_executor
        self._marks: dict[int, int] = {}  # partition -> newest offset handled in order
        self._persisted: dict[int, int] = {}  # partition -> the watermark last written to the table
        self._applied = 0  # events applied so far (tells a re-read that found new events from one of replays)
        self._ingested: dict[tuple[str, int], int] = {}  # newest offset ingested and not yet published, per partition

    def forget_partitions(self) -> None:
        """Call when partitions are revoked: the next event of each re-reads the watermark from the table."""
        self._marks.clear()
        self._persisted.clear()

    async def ingest(self, source: Source, raw: bytes | None) -> list[Outcome]:
        """Handle one event, after any events of its partition that the consumer skipped. Never raises.

        The table holds, per partition, a watermark: the newest offset handled in order. An event beyond it
        means the consumer skipped records (faust can do so around rebalances, counting them as done); they
        are read again with ``fetch`` and handled first, in order.

        Returns:
            Per event handled: the user's update to publish; a :class:`DeadLetter`; or ``None`` for a replayed
            event that a newer event of the same user (also being replayed) will publish.
        """
        outcomes: list[Outcome] = []
        if self.progress.offset((source.topic, source.partition)) is None:  # the consumer started here
            self.progress.handled(source.topic, source.partition, source.offset - 1)
        mark = self._mark(source.partition)
        if mark is not None and source.offset > mark + 1 and self._fetch is not None:
            outcomes.extend(await self._refetch(source, mark + 1))
        outcomes.append(await self._ingest_one(source, raw))
        if mark is None or source.offset > mark:
            self._advance(source.partition, source.offset)
        self._ingested[(source.topic, source.partition)] = source.offset
        return outcomes

    def _mark(self, partition: int) -> int | None:
        if partition not in self._marks:
            persisted = watermark_of(self.table.get(watermark_key(partition)))
            if persisted is None:
                return None
            self._marks[partition] = self._persisted[partition] = persisted
        return self._marks[partition]

    def _advance(self, partition: int, offset: int) -> None:
        self._marks[partition] = offset
        if offset - self._persisted.get(partition, -WATERMARK_EVERY) >= WATERMARK_EVERY:
            self.table[watermark_key(partition)] = {"offset": offset}
            self._persisted[partition] = offset

    async def _refetch(self, source: Source, start: int) -> list[Outcome]:
        """Handle the records of ``source``'s partition from ``start`` up to it, read again from the broker."""
        assert self._fetch is not None
        loop = asyncio.get_running_loop()
        pause = 0.5
        while True:
            try:
                missing = await loop.run_in_executor(
                    self._fetch_executor, self._fetch, source.topic, source.partition, start, source.offset
                )
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker is away: the partition waits, nothing is skipped
                logger.warning(
                    "cannot read %s[%d] %d..%d again (%s: %s); retrying in %.1fs",
                    source.topic,
                    source.partition,
                    start,
                    source.offset - 1,
                    exc.__class__.__name__,
                    exc,
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(5.0, pause * 2)
        applied_before = self._applied
        outcomes = [await self._ingest_one(found, raw) for found, raw in missing]
        applied = self._applied - applied_before
        self.metrics.events_refetched.inc(applied)
        # Nothing new: the persisted watermark lags the commit a little (it is written every WATERMARK_EVERY
        # events), so a new owner re-reads a few replays. Something new: the consumer had skipped them.
        logger.log(
            logging.WARNING if applied else logging.DEBUG,
            "%s[%d] offsets %d..%d read again: %d of %d events had not been applied (the consumer skipped them)",
            source.topic,
            source.partition,
            start,
            source.offset - 1,
            applied,
            len(missing),
        )
        self._persisted.pop(source.partition, None)  # write the watermark with the next event
        return outcomes

    async def _ingest_one(self, source: Source, raw: bytes | None) -> Outcome:
        try:
            parsed = parse_event(
                raw, self._event_types, self.settings.max_event_bytes, key=source.key, require_key=True
            )
        except InvalidEvent as exc:
            return await self._dead_letters.send(source, raw, exc)
        try:
            return self._apply(source, parsed.user_id, parsed.item_id, parsed.event_type, parsed.ts, parsed.event_id)
        except Exception as exc:  # a bug or a store failure: dead-letter the event, never stall the partition
            logger.exception("failed on %s[%d]@%d", source.topic, source.partition, source.offset)
            detail = f"{exc.__class__.__name__}: {exc}"
            return await self._dead_letters.send(source, raw, InvalidEvent(INTERNAL_ERROR, detail))

    def _apply(
        self, source: Source, user_id: str, item_id: str, event_type: str, event_ts: float, event_id: str | None
    ) -> Update | None:
        key = user_id.encode()
        history = UserHistory.from_json(self.table.get(key))
        updated = apply_event(history, item_id, source.offset, self.settings.max_len)
        if updated is None:
            # A replay (e.g. after a crash): the event is already in the sequence. Write the value again,
            # because the store may hold writes that never reached the changelog; only the user's newest
            # applied event publishes, since only for it is the current sequence the one as of the event.
            self.table[key] = history.to_json()
            if source.offset != history.offset:
                return None
        else:
            self.table[key] = updated.to_json()
            history = updated
            self.metrics.events.labels(event_type).inc()
            self._applied += 1
        record_ts = source.timestamp if source.timestamp else time.time()
        return Update(user_id, history.items, event_ts, record_ts, event_id)

    def _score(self, engine: Engine, sequences: Sequence[tuple[str, ...]]) -> list[list[ScoredItem]]:
        started = time.perf_counter()
        results = engine.recommend(sequences, self.settings.top_k)
        self.metrics.inference.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(sequences))
        return results

    async def publish_batch(self, outcomes: Sequence[Outcome]) -> int:
        """Score the newest update of each user in one model call, publish one record per user, and wait
        until the batch's dead letters are written (so an event is never acknowledged before its dead letter).

        Returns:
            The number of recommendation records published.
        """
        latest = latest_per_user(o for o in outcomes if isinstance(o, Update))
        if latest:
            engine = self.registry.current  # one model per batch, even if a swap happens meanwhile
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(self._executor, self._score, engine, [u.items for u in latest])
            for update, items in zip(latest, results):
                produced = time.time()
                value = recommendation(
                    update.user_id, items, engine.version, update.event_ts, produced, update.event_id
                )
                await self._send_recommendation(update.user_id.encode(), value)
                self.metrics.event_to_recommendation.observe(max(0.0, time.time() - update.record_ts))
            self.metrics.recommendations.inc(len(latest))
        for outcome in outcomes:
            if isinstance(outcome, DeadLetter):
                await self._dead_letters.confirm(outcome)
        for (topic, partition), offset in self._ingested.items():  # done with: what lag and the watchdog see
            self.progress.handled(topic, partition, offset)
        self._ingested.clear()
        return len(latest)

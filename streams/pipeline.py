"""What the worker does with each batch of events: plain records in, I/O injected, no Faust."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import orjson

from serving.engine import Engine, ScoredItem
from serving.registry import ModelRegistry
from streams.catalog import Catalog, Scorer
from streams.dead_letters import DeadLetter, DeadLetters, Send
from streams.grading import Grade, ServedLists, grade, in_shadow_share
from streams.metrics import Metrics, OnlineCounters
from streams.progress import Progress
from streams.records import INTERNAL_ERROR, Event, InvalidEvent, parse_event, recommendation
from streams.sequences import Update, UserHistory, apply_event, watermark_key, watermark_of, watermark_value
from streams.settings import Settings
from streams.source import Source

logger = logging.getLogger(__name__)

# fetch(topic, partition, start, end) -> the records at offsets [start, end) as (Source, value); blocking.
Fetch = Callable[[str, int, int, int], "list[tuple[Source, bytes | None]]"]
Record = tuple[Source, "bytes | None"]
# send_many([(key, value), ...]) hands records to the producer.
SendMany = Callable[[Sequence[tuple[bytes, bytes]]], Awaitable[object]]
# write(partition, {key: value}) puts a batch's values into the table (and its changelog).
Write = Callable[[int, Mapping[bytes, bytes]], Awaitable[None]]
# read(key) -> the table's value (None: none).
Read = Callable[[bytes], "bytes | None"]


@dataclass
class Batch:
    """What ingesting a batch produced: the users to score (newest event each), the dead letters, the offsets.

    ``updates`` keeps one entry per user: the newest event that changed (or, replayed, last changed) the
    user's sequence, with the sequence as of it.
    """

    updates: dict[str, Update] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # newest offset handled per partition
    grades: list[tuple[bytes, bytes]] = field(default_factory=list)  # paired live/shadow grade records
    applied: dict[str, int] = field(default_factory=dict)  # events newly applied, by event type
    started: float | None = None  # time.perf_counter() when the batch left the worker's buffer

    def merge(self, other: Batch) -> None:
        for user, update in other.updates.items():
            self.updates.pop(user, None)
            self.updates[user] = update
        self.dead_letters.extend(other.dead_letters)
        self.offsets.update(other.offsets)
        self.grades.extend(other.grades)
        for event_type, n in other.applied.items():
            self.applied[event_type] = self.applied.get(event_type, 0) + n


@dataclass
class Scored:
    """A batch's lists: the live model's (one per update, in order) and the shadow's (by user id)."""

    live: Sequence[Sequence[ScoredItem]]
    shadow_version: str | None = None
    shadow: dict[str, list[ScoredItem]] = field(default_factory=dict)


class Pipeline:
    """Validates events, updates sequences, scores batches and publishes recommendations.

    Args:
        settings: worker settings.
        registry: holds the engine being served.
        metrics: the metric bundle.
        table: user id (bytes) -> ``UserHistory.to_bytes()`` (JSON); a Faust table in the worker.
        send_recommendations: ``[(key, value), ...]`` -> awaitable, publishes to `recommendations`.
        send_dead_letter: ``(key, value)`` -> awaitable, publishes to `events-dlq`.
        progress: the newest offset done with per partition (lag, the stall watchdog).
        fetch: reads a range of the events topic again (see :meth:`ingest`); None turns that off.
        fetch_executor: where ``fetch`` runs.
        write: ``(partition, {key: value})`` -> awaitable, a batch's table writes (and changelog); default:
            assignment into ``table``.
        read: ``key`` -> the value ``write`` wrote (None: none); default: ``table.get``.
        lists: the last lists served to each user (online grading); None turns online grading off.
        send_grades: ``[(key, value), ...]`` -> awaitable, publishes paired live/shadow grades.
        catalog: the live catalog (availability and scenarios filter every list); None: no filtering.
    """

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        metrics: Metrics,
        table: MutableMapping[bytes, bytes],
        send_recommendations: SendMany,
        send_dead_letter: Send,
        progress: Progress | None = None,
        fetch: Fetch | None = None,
        fetch_executor: Executor | None = None,
        write: Write | None = None,
        read: Read | None = None,
        lists: ServedLists | None = None,
        send_grades: SendMany | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.table = table
        self._send_recommendations = send_recommendations
        self._dead_letters = DeadLetters(send_dead_letter, metrics.events_invalid)
        self._event_types = frozenset(settings.event_types)
        self.progress = progress or Progress()
        self._fetch = fetch
        self._fetch_executor = fetch_executor
        self._write = write or self._assign
        self._get = read or self._table_get
        self.lists = lists
        self._send_grades = send_grades
        self._online = OnlineCounters(metrics)
        self.catalog = catalog
        self._marks: dict[int, int] = {}  # partition -> newest offset handled in order (its watermark)
        self._applied = 0  # events applied so far (tells a re-read that found new events from one of replays)
        # partition -> the values its last batch wrote, decoded: the next batch reads most of them again (the users
        # it grades or applies again), and decoding JSON was a tenth of the event loop at the pipeline ceiling
        self._written: dict[int, dict[bytes, tuple[bytes, UserHistory]]] = {}

    def forget_partitions(self, revoked: set[int] | None = None) -> None:
        """Call when partitions are revoked: the next batch of each re-reads its watermark from the table, and
        the served lists of the revoked partitions (None: all) are dropped."""
        self._marks.clear()
        self._written.clear()
        if self.lists is not None:
            self.lists.drop(revoked)

    # --- ingesting ---------------------------------------------------------------------------------------------
    async def ingest(self, records: Sequence[Record]) -> Batch:
        """Apply a batch of one partition's events, in offset order, after any the consumer skipped. Never raises.

        Each user's value is read once and written once per batch; invalid events are dead-lettered. The table
        holds, per partition, a watermark: the newest offset handled in order. An event beyond it means the
        consumer skipped records (faust can do so around rebalances, counting them as done); they are read
        again with ``fetch`` and applied first, in order.
        """
        batch = Batch()
        if not records:
            return batch
        first = records[0][0]
        tp = (first.topic, first.partition)
        if self.progress.offset(tp) is None:  # the consumer started here
            self.progress.handled(first.topic, first.partition, first.offset - 1)
        histories: dict[bytes, UserHistory] = {}
        mark = self._mark(first.partition)
        for source, raw in records:
            if mark is not None and source.offset > mark + 1 and self._fetch is not None:
                missing = await self._refetch(source, mark + 1)
                applied_before = self._applied
                for found, value in missing:
                    await self._ingest_one(found, value, histories, batch)
                self._report_refetch(source, mark + 1, self._applied - applied_before, len(missing))
            await self._ingest_one(source, raw, histories, batch)
            if mark is None or source.offset > mark:
                mark = source.offset
        if self.lists is not None:
            self._keep_served(first.partition, histories)
        values = {key: history.to_bytes() for key, history in histories.items()}  # replays re-send values too
        self._written[first.partition] = {key: (values[key], history) for key, history in histories.items()}
        if mark is not None:
            self._marks[first.partition] = mark
            values[watermark_key(first.partition)] = watermark_value(mark)
        await self._write(first.partition, values)  # one write per user per batch
        for event_type, n in batch.applied.items():  # counted per batch: a labelled increment per event cost ~4%
            self.metrics.events.labels(event_type).inc(n)
        self._online.flush()
        batch.offsets[tp] = records[-1][0].offset
        return batch

    def _keep_served(self, partition: int, histories: dict[bytes, UserHistory]) -> None:
        """Put the partition's lists that are due (see ``ServedLists``) into their users' values (written with
        the batch), where the sequence is still the one they were made from."""
        assert self.lists is not None
        for key, served in self.lists.take(partition).items():
            history = histories.get(key)
            if history is None:
                history = self._read(partition, key)
            if history.offset == served.get("o"):
                histories[key] = history.serving(served)

    def _read(self, partition: int, key: bytes) -> UserHistory:
        """The user's history in the table; decoded again only when it is not what the partition's last batch
        wrote (compared byte for byte, so a value written by anyone else is always read as it is)."""
        raw = self._get(key)
        written = self._written.get(partition, {}).get(key)
        if written is not None and written[0] == raw:
            return written[1]
        return UserHistory.from_bytes(raw)

    def _table_get(self, key: bytes) -> bytes | None:
        return self.table.get(key)

    async def _assign(self, partition: int, values: Mapping[bytes, bytes]) -> None:
        for key, value in values.items():
            self.table[key] = value

    def _mark(self, partition: int) -> int | None:
        if partition not in self._marks:
            persisted = watermark_of(self._get(watermark_key(partition)))
            if persisted is None:
                return None
            self._marks[partition] = persisted
        return self._marks[partition]

    async def _refetch(self, source: Source, start: int) -> list[Record]:
        """The records of ``source``'s partition from ``start`` up to it, read again from the broker."""
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
                where = f"{source.topic}[{source.partition}] {start}..{source.offset - 1}"
                logger.warning(
                    "cannot read %s again (%s: %s); retrying in %.1fs", where, type(exc).__name__, exc, pause
                )
                await asyncio.sleep(pause)
                pause = min(5.0, pause * 2)
        return missing

    def _report_refetch(self, source: Source, start: int, applied: int, read: int) -> None:
        # Nothing newly applied: a replay (e.g. a crash between two watermark writes). Something: the consumer
        # had skipped those events.
        self.metrics.events_refetched.inc(applied)
        logger.log(
            logging.WARNING if applied else logging.DEBUG,
            "%s[%d] offsets %d..%d read again: %d of %d events had not been applied (the consumer skipped them)",
            source.topic,
            source.partition,
            start,
            source.offset - 1,
            applied,
            read,
        )

    async def _ingest_one(
        self, source: Source, raw: bytes | None, histories: dict[bytes, UserHistory], batch: Batch
    ) -> None:
        try:
            event = parse_event(raw, self._event_types, self.settings.max_event_bytes, key=source.key, require_key=True)
        except InvalidEvent as exc:
            batch.dead_letters.append(await self._dead_letters.send(source, raw, exc))
            return
        try:
            self._apply(source, event, histories, batch)
        except Exception as exc:  # a bug or a store failure: dead-letter the event, never stall the partition
            logger.exception("failed on %s[%d]@%d", source.topic, source.partition, source.offset)
            error = InvalidEvent(INTERNAL_ERROR, f"{exc.__class__.__name__}: {exc}")
            batch.dead_letters.append(await self._dead_letters.send(source, raw, error))

    def _apply(self, source: Source, event: Event, histories: dict[bytes, UserHistory], batch: Batch) -> None:
        key = source.key
        assert key is not None  # parse_event required it
        history = histories.get(key)
        if history is None:
            history = self._read(source.partition, key)
        updated = apply_event(
            history, event.item_id, source.offset, self.settings.max_len, event.event_type, event.scenario
        )
        if updated is not None:
            if self.lists is not None:
                try:
                    self._grade(key, source, event, history, batch)
                except Exception:  # grading never costs an event: it is applied ungraded
                    logger.exception("grading %s[%d]@%d failed", source.topic, source.partition, source.offset)
            history = updated
            self._applied += 1
            batch.applied[event.event_type] = batch.applied.get(event.event_type, 0) + 1
        elif source.offset != history.offset:
            # An older replayed event: it is in the sequence already, and a newer event of the user (replayed
            # too) publishes; its own list cannot be made any more, the sequence as of it is gone.
            histories[key] = history
            return
        # Newly applied, or the replay of the user's newest applied event (its list is the current sequence).
        histories[key] = history
        record_ts = source.timestamp if source.timestamp else time.time()
        batch.updates.pop(event.user_id, None)
        batch.updates[event.user_id] = Update(
            event.user_id,
            history.items,
            event.ts,
            record_ts,
            event.event_id,
            source.partition,
            source.offset,
            event.event_type,
            event.scenario,
            history.types,
            history.scenarios,
        )

    def _grade(self, key: bytes, source: Source, event: Event, before: UserHistory, batch: Batch) -> None:
        """Grade a newly applied event against the list served for the sequence it extends, if one was.

        The list counts only if it was made from exactly that sequence (its trigger is the sequence's newest
        offset) and published before the event was read; each event is graded once, when it is applied.
        """
        assert self.lists is not None
        served = self.lists.get(source.partition, key) or before.served
        if not served or served.get("o") != before.offset:
            return
        seen = before.items
        live_version, live_items = served["live"]
        live = grade(event.item_id, live_items, seen)
        self._online.record("live", live_version, event.event_type, live)
        if "shadow" not in served:
            return
        shadow_version, shadow_items = served["shadow"]
        shadow = grade(event.item_id, shadow_items, seen)
        self._online.record("shadow", shadow_version, event.event_type, shadow)
        batch.grades.append((key, _grade_record(source, event, live_version, live, shadow_version, shadow)))

    # --- scoring and publishing ----------------------------------------------------------------------------------
    def score(self, engine: Engine, updates: Sequence[Update], shadow: Engine | None = None) -> Scored:
        """The model's call(s) for the batch, and the shadow model's for its share of users (blocking: run it in
        a thread)."""
        started = time.perf_counter()
        results = self._recommend(engine, updates)
        self.metrics.inference.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(updates))
        scored = Scored(results)
        if shadow is not None:
            share = self.settings.shadow_fraction
            chosen = [u for u in updates if in_shadow_share(u.user_id, share)]
            if chosen:
                started = time.perf_counter()
                try:
                    lists = self._recommend(shadow, chosen)
                except Exception:  # a candidate never harms the live path: its batch goes ungraded
                    logger.exception("shadow model %s failed on a batch; the live lists are published", shadow.version)
                    return scored
                self.metrics.shadow_inference.observe(time.perf_counter() - started)
                scored = Scored(results, shadow.version, {u.user_id: items for u, items in zip(chosen, lists)})
        return scored

    def _recommend(self, engine: Engine, updates: Sequence[Update]) -> list[list[ScoredItem]]:
        """The lists for ``updates``: one ``recommend``, or one per scenario when the catalog filters by scenario."""
        k = self.settings.top_k
        if self.catalog is None or not len(self.catalog):
            return engine.recommend([u.items for u in updates], k, None, _behaviour(updates))
        if not self.settings.scenario_filter:
            return engine.recommend([u.items for u in updates], k, self._mask(None), _behaviour(updates))
        groups: dict[str | None, list[int]] = {}
        for index, update in enumerate(updates):
            groups.setdefault(update.scenario, []).append(index)
        results: list[list[ScoredItem]] = [[] for _ in updates]
        for scenario, rows in groups.items():
            chosen = [updates[r] for r in rows]
            lists = engine.recommend([u.items for u in chosen], k, self._mask(scenario), _behaviour(chosen))
            for row, items in zip(rows, lists):
                results[row] = items
        return results

    def _mask(self, scenario: str | None) -> Callable[[Scorer], np.ndarray]:
        """The catalog's filter for ``scenario``, as a bias row for the item rows a call is scored against."""
        catalog = self.catalog
        assert catalog is not None
        return lambda rows: catalog.bias(rows, scenario)

    async def publish(self, batch: Batch, engine: Engine, scored: Scored) -> int:
        """Send one record per user, remember what each was served (online grading) and wait until the batch's
        dead letters are on the broker.

        Returns:
            The number of recommendation records published.
        """
        observe = self.metrics.event_to_recommendation.observe
        produced = time.time()
        records = []
        for update, items in zip(batch.updates.values(), scored.live):
            value = recommendation(
                update.user_id, items, engine.version, update.event_ts, produced, update.event_id, update.scenario
            )
            records.append((update.user_id.encode(), value))
            observe(max(0.0, produced - update.record_ts))
        await self._send_recommendations(records)
        if batch.started is not None:
            self.metrics.batch_seconds.observe(time.perf_counter() - batch.started)
        self.metrics.recommendations.inc(len(records))
        if self.lists is not None:
            self._remember(batch, engine.version, scored)
        if batch.grades and self._send_grades is not None:
            await self._send_grades(batch.grades)
        for letter in batch.dead_letters:
            await self._dead_letters.confirm(letter)
        return len(batch.updates)

    def _remember(self, batch: Batch, version: str, scored: Scored) -> None:
        """Keep each user's newest served lists (item ids), to grade the user's next event against."""
        assert self.lists is not None
        by_partition: dict[int, dict[bytes, dict]] = {}
        for update, items in zip(batch.updates.values(), scored.live):
            value: dict = {"o": update.offset, "live": [version, [item.item_id for item in items]]}
            shadow = scored.shadow.get(update.user_id)
            if shadow is not None:
                value["shadow"] = [scored.shadow_version, [item.item_id for item in shadow]]
            by_partition.setdefault(update.partition, {})[update.user_id.encode()] = value
        for partition, values in by_partition.items():
            self.lists.put(partition, values)

    def done(self, batch: Batch) -> None:
        """Record the batch's offsets as done with (what lag and the watchdog see)."""
        for (topic, partition), offset in batch.offsets.items():
            self.progress.handled(topic, partition, offset)


def _behaviour(updates: Sequence[Update]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Each update's event types and scenarios, for a model that reads them."""
    return [(u.types, u.scenarios) for u in updates]


def _grade_record(
    source: Source, event: Event, live_version: str, live: Grade, shadow_version: str, shadow: Grade
) -> bytes:
    """One paired grade: the same event against the live and the shadow list (ranks 0-based, null = miss)."""
    return orjson.dumps(
        {
            "partition": source.partition,
            "offset": source.offset,
            "event_type": event.event_type,
            "live": live_version,
            "live_rank": live.rank,
            "shadow": shadow_version,
            "shadow_rank": shadow.rank,
        }
    )

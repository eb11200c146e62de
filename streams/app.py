"""The Faust worker: topics, the user-sequence table, the agent, timers and the metrics server."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import faust
from prometheus_client import CollectorRegistry, start_http_server

from serving.engine import Engine
from serving.registry import ModelRegistry, engine_loader
from streams.agent import recommend_agent
from streams.batcher import Batcher
from streams.bulk_send import BulkSender
from streams.catalog import Catalog
from streams.catalog_reader import CatalogReader
from streams.consumer import Consumer
from streams.dead_letters import Send
from streams.grading import ServedLists
from streams.intake import Intake
from streams.kafka_admin import ensure_topics, events_waiting, kafka_answers
from streams.kafka_reader import fetch_range
from streams.lag import LagTracker
from streams.metrics import Metrics
from streams.model_watch import ModelWatch
from streams.new_items import NewItems
from streams.pipeline import Pipeline, SendMany
from streams.publisher import Publisher
from streams.recovery_watch import RecoveryWatch
from streams.rocksdb import bound_store_memory, rocksdb_options
from streams.sequences import watermark_key
from streams.settings import Settings
from streams.supervision import EXIT_FAILED, Worker, exit_now
from streams.table_writer import TableWriter
from streams.watchdog import Watchdog

logger = logging.getLogger(__name__)

TABLE_NAME = "user_sequences"
HOUSEKEEPING_SECONDS = 2
USERS_COUNT_SECONDS = 30


def ensure_worker_topics(settings: Settings) -> None:
    """Create the worker's topics (same partition count), or refuse a mismatched events topic."""
    ensure_topics(
        settings.kafka_bootstrap,
        {
            settings.events_topic: settings.partitions,
            settings.recommendations_topic: settings.partitions,
            settings.dlq_topic: settings.partitions,
            settings.grades_topic: settings.partitions,
        },
        settings.replication_factor,
    )
    # the catalog: compacted (the newest record per item is the item); every worker reads all its partitions
    ensure_topics(
        settings.kafka_bootstrap,
        {settings.items_topic: settings.partitions},
        settings.replication_factor,
        strict=False,
        configs={"cleanup.policy": "compact"},
    )


def load_registry(settings: Settings, prepare: Callable[[Engine], object] | None = None) -> ModelRegistry:
    """The model registry for ``settings.model_dir`` (raises ArtifactError with advice); ``prepare`` runs on every
    engine loaded, before it is served."""
    load = engine_loader(
        settings.device,
        settings.max_batch,
        settings.ort_threads,
        settings.exclude_seen,
        settings.top_k,
        prepare,
        settings.new_row_mix(),
    )
    return ModelRegistry(settings.model_dir, load, settings.shadow_model)


def build_app(
    settings: Settings,
    registry: ModelRegistry,
    metrics: Metrics,
    sinks: tuple[SendMany, Send] | None = None,
    watchdog: Watchdog | None = None,
    on_fatal: Callable[[str, BaseException], None] | None = None,
    catalog: Catalog | None = None,
) -> tuple[faust.App, Pipeline]:
    """The Faust app with its agent wired to a :class:`Pipeline`.

    Args:
        sinks: ``(send_recommendations, send_dead_letter)``; default: the output topics (tests inject fakes).
        watchdog: told each housekeeping tick how every assigned partition is doing.
        on_fatal: called with a reason when the agent cannot go on; default: log and exit the process
            non-zero, so a supervisor restarts it (a live process that does nothing is the worst state).
        catalog: the live catalog (availability and scenario filters); None: no catalog.
    """
    fatal = on_fatal or (lambda reason, exc: exit_now(EXIT_FAILED, reason, exc))
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=settings.producer_linger_ms,
        producer_max_batch_size=256 * 1024,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.session_timeout / 3,
        broker_commit_interval=settings.commit_interval,
        consumer_group_instance_id=settings.instance_id,
    )
    intake = Intake(app)  # the events topic's records go from the consumer to the agent's batcher directly
    # see streams/consumer.py: no 1 s fetch pause when stream buffers are full, and the intake
    app.transport.Consumer = Consumer.delivering({settings.events_topic: intake})
    events = app.topic(settings.events_topic, partitions=settings.partitions)
    dlq = app.topic(settings.dlq_topic)
    table = app.Table(
        TABLE_NAME,
        default=None,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,  # JSON written by streams.sequences (UserHistory.to_bytes, watermark_value)
        options=rocksdb_options(settings) if settings.store.startswith("rocksdb") else None,
    )
    if settings.store.startswith("rocksdb"):
        bound_store_memory(table.data)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrec-model")
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrec-model-loader")  # swaps never stall scoring

    drain = write = read = send_grades = None
    if sinks is None:
        producer = app.producer._ensure_producer  # faust's aiokafka producer: commits flush what it was given
        sinks = (BulkSender(producer, settings.recommendations_topic), partial(_send, dlq))
        write = TableWriter(table, producer)
        read = write.read
        send_grades = BulkSender(producer, settings.grades_topic)
        drain = partial(_drain_producer_buffer, app)
        # table writes of a whole batch go out at once: do not make faust's conductor throttle at 100
        app.producer.buffer.max_messages = max(app.producer.buffer.max_messages, 4 * settings.max_batch)
    refetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrec-refetch")
    pipeline = Pipeline(
        settings,
        registry,
        metrics,
        table,
        *sinks,
        fetch=partial(fetch_range, settings.kafka_bootstrap),
        fetch_executor=refetch,
        write=write,
        read=read,
        lists=ServedLists(settings.served_write_delay) if settings.online_grading else None,
        send_grades=send_grades,
        catalog=catalog,
    )

    @app.on_partitions_revoked.connect
    async def forget(app: faust.App, revoked: set, **kwargs: object) -> None:
        pipeline.forget_partitions({tp.partition for tp in revoked if tp.topic == settings.events_topic})

    model_watch = ModelWatch(registry, metrics, loader)

    def make_batcher() -> Batcher:
        return Batcher(settings.max_batch, settings.latency_budget_ms / 1000)

    def make_publisher(batcher: Batcher) -> Publisher:
        # drain: every table write of a batch is with the Kafka client before faust acknowledges the batch
        return Publisher(pipeline, registry, executor, fatal, settings.batches_in_flight, drain, batcher.observe)

    app.agent(events, name="recommend")(recommend_agent(pipeline, make_publisher, make_batcher, fatal, intake))

    lag = LagTracker(settings.events_topic, pipeline.progress, metrics.consumer_lag)
    recovery_watch = RecoveryWatch(
        app.tables.recovery,
        lambda tp, offset: app.consumer.seek_wait({tp: offset}),
        on_nudge=lambda tp: metrics.recovery_reseeks.inc(),
    )
    ticks = itertools.count()
    count_every = 1 if settings.store.startswith("memory") else USERS_COUNT_SECONDS // HOUSEKEEPING_SECONDS

    async def housekeeping() -> None:
        tick = next(ticks)
        if tick == 1:
            # Everything built at start-up (modules, the model, faust's services) lives as long as the process:
            # out of the collector's sight, its full collections take a few ms instead of ~80 ms, which
            # otherwise stall every thread at once, and with them a batch's latency, every few seconds.
            gc.freeze()
        if tick % count_every == 0:  # counting a RocksDB table walks its keys: not every tick
            metrics.users_tracked.set(count_users(table, settings.partitions))
        await recovery_watch.check()
        health = await lag.update(app.consumer)
        if watchdog is not None:
            watchdog.beat(health, busy=bool(app.rebalancing or app.in_recovery))

    app.timer(HOUSEKEEPING_SECONDS, name="streamrec.housekeeping")(housekeeping)
    if settings.model_poll_seconds > 0 and (registry.follows_root or registry.shadow_source is not None):
        app.timer(settings.model_poll_seconds, name="streamrec.poll_model")(model_watch.poll)
    return app, pipeline


def count_users(table: Mapping[bytes, object], partitions: int) -> int:
    """Users in the table: its keys less the partitions' watermarks."""
    return len(table) - sum(1 for partition in range(partitions) if watermark_key(partition) in table)


async def _drain_producer_buffer(app: faust.App) -> None:
    """Wait until faust has handed every buffered table write to the Kafka client.

    faust's own buffer flush gives up after 0.1 s while writes are still queued, and a commit could then
    precede them; waiting here, before the batch's events are acknowledged, keeps the changelog ahead.
    """
    buffer = app.producer.buffer
    while buffer.size:
        await asyncio.sleep(0.001)


async def _send(topic: faust.types.TopicT, key: bytes, value: bytes) -> object:
    """Hand a record to faust's producer; the returned future completes when the broker has it."""
    return await topic.send(key=key, value=value)


def run_worker(settings: Settings) -> int:
    """Start the worker in this process and block until it is stopped (SIGINT/SIGTERM)."""
    prom = CollectorRegistry()
    metrics = Metrics.create(prom, settings.event_types)
    catalog = Catalog()
    new_items = NewItems(catalog, metrics)
    registry = load_registry(settings, new_items.prepare)
    ensure_worker_topics(settings)
    if settings.metrics_port:
        try:
            start_http_server(settings.metrics_port, registry=prom)
        except OSError as exc:
            raise SystemExit(
                f"streamrec worker: cannot serve metrics on port {settings.metrics_port} ({exc.strerror}): "
                "set STREAMREC_METRICS_PORT to a free port (0 turns the endpoint off)"
            ) from None
        logger.info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)
    watchdog = None
    if settings.stall_timeout > 0:
        watchdog = Watchdog(
            settings.stall_timeout,
            partial(kafka_answers, settings.kafka_bootstrap, 3.0),
            events_waiting=partial(events_waiting, settings.kafka_bootstrap, settings.app_id),
        )
        watchdog.watch(lambda reason: exit_now(EXIT_FAILED, f"stalled: {reason}"))

    def add_new_items(live: bool = True) -> None:
        for engine in (registry.current, registry.shadow):
            if engine is not None:
                new_items.sync(engine, live=live and engine is registry.current)

    reader = CatalogReader(settings, catalog, metrics, after_poll=add_new_items)
    started = time.monotonic()
    read = reader.restore()
    add_new_items(live=False)
    logger.info(
        "catalog: %d items from %d records of %s in %.1fs (%d new to model %s)",
        len(catalog),
        read,
        settings.items_topic,
        time.monotonic() - started,
        len(registry.current.rows) - registry.current.trained_rows,
        registry.current.version,
    )
    reader.start()
    app, _ = build_app(settings, registry, metrics, watchdog=watchdog, catalog=catalog)
    logger.info(
        "worker %s: %s -> %s (dead letters: %s), model %s on %s, batches of <= %d, latency budget %.0f ms",
        settings.app_id,
        settings.events_topic,
        settings.recommendations_topic,
        settings.dlq_topic,
        registry.current.version,
        registry.current.device,
        settings.max_batch,
        settings.latency_budget_ms,
    )
    worker = Worker(
        app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False, shutdown_timeout=settings.shutdown_timeout
    )
    try:
        worker.execute_from_commandline()
    finally:
        reader.stop()
    return 0

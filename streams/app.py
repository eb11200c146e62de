"""The Faust worker: topics, the user-sequence table, the agent, timers and the metrics server."""

from __future__ import annotations

import itertools
import logging
from concurrent.futures import ThreadPoolExecutor

import faust
from prometheus_client import CollectorRegistry, start_http_server

from serving.registry import REJECTED, SWAPPED, ModelRegistry, engine_loader
from streams.kafka_admin import ensure_topics
from streams.metrics import Metrics
from streams.pipeline import Pipeline, Send
from streams.records import REASONS
from streams.settings import Settings

logger = logging.getLogger(__name__)

TABLE_NAME = "user_sequences"
HOUSEKEEPING_SECONDS = 2
USERS_COUNT_SECONDS = 30


def ensure_worker_topics(settings: Settings) -> None:
    """Create the worker's topics (same partition count), or refuse a mismatched events topic."""
    ensure_topics(
        settings.kafka_bootstrap,
        {settings.events_topic: settings.partitions, settings.recommendations_topic: settings.partitions,
         settings.dlq_topic: settings.partitions},
        settings.replication_factor,
    )


def load_registry(settings: Settings) -> ModelRegistry:
    """The model registry for ``settings.model_dir`` (raises ArtifactError with advice)."""
    load = engine_loader(settings.device, settings.max_batch, settings.ort_threads, settings.exclude_seen)
    return ModelRegistry(settings.model_dir, load)


def build_app(
    settings: Settings,
    registry: ModelRegistry,
    metrics: Metrics,
    sinks: tuple[Send, Send] | None = None,
) -> tuple[faust.App, Pipeline]:
    """The Faust app with its agent wired to a :class:`Pipeline`.

    Args:
        sinks: ``(send_recommendation, send_dead_letter)``; default: the output topics (tests inject fakes).
    """
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
    )
    events = app.topic(settings.events_topic, partitions=settings.partitions)
    recommendations = app.topic(settings.recommendations_topic)
    dlq = app.topic(settings.dlq_topic)
    table = app.Table(TABLE_NAME, default=None, partitions=settings.partitions, key_type=bytes)  # values: JSON
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrec-model")
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrec-model-loader")  # swaps never stall scoring

    if sinks is None:
        async def send_recommendation(key: bytes, value: bytes) -> object:
            return await recommendations.send(key=key, value=value)

        async def send_dead_letter(key: bytes, value: bytes) -> object:
            return await dlq.send(key=key, value=value)

        sinks = (send_recommendation, send_dead_letter)
    pipeline = Pipeline(settings, registry, metrics, table, *sinks, executor)
    metrics.model_info.labels(registry.current.version).set(1)
    for event_type in settings.event_types:  # every labelled series exists from the start (dashboards, increase())
        metrics.events.labels(event_type)
    for reason in REASONS:
        metrics.events_invalid.labels(reason)
    for outcome in (SWAPPED, REJECTED):
        metrics.model_swaps.labels(outcome)

    async def recommend(stream: faust.Stream) -> None:
        stream.add_processor(pipeline.ingest)
        async for batch in stream.take(settings.max_batch, within=settings.max_wait):
            await pipeline.publish_batch(batch)

    app.agent(events, name="recommend")(recommend)

    ticks = itertools.count()
    lag_series: set[tuple[str, int]] = set()
    count_every = 1 if settings.store.startswith("memory") else USERS_COUNT_SECONDS // HOUSEKEEPING_SECONDS

    async def housekeeping() -> None:
        if next(ticks) % count_every == 0:  # counting a RocksDB table walks its keys: not every tick
            metrics.users_tracked.set(len(table))
        consumer = app.consumer
        assigned = {tp for tp in consumer.assignment() if tp.topic == settings.events_topic}
        for topic, partition in set(lag_series) - {(tp.topic, tp.partition) for tp in assigned}:
            metrics.consumer_lag.remove(topic, str(partition))  # moved to another worker by a rebalance
            lag_series.discard((topic, partition))
        for tp in assigned:
            highwater = consumer.highwater(tp)
            done = pipeline.processed_offsets.get((tp.topic, tp.partition))
            if highwater is None:
                continue
            lag = highwater - (done + 1) if done is not None else highwater - (await consumer.position(tp) or 0)
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, lag))
            lag_series.add((tp.topic, tp.partition))

    app.timer(HOUSEKEEPING_SECONDS, name="streamrec.housekeeping")(housekeeping)

    if settings.model_poll_seconds > 0 and registry.follows_root:
        async def poll_model() -> None:
            previous = registry.current.version
            outcome = await app.loop.run_in_executor(loader, registry.poll)
            if outcome == SWAPPED:
                metrics.model_info.remove(previous)
                metrics.model_info.labels(registry.current.version).set(1)
            if outcome in (SWAPPED, REJECTED):
                metrics.model_swaps.labels(outcome).inc()

        app.timer(settings.model_poll_seconds, name="streamrec.poll_model")(poll_model)
    return app, pipeline


def run_worker(settings: Settings) -> int:
    """Start the worker in this process and block until it is stopped (SIGINT/SIGTERM)."""
    registry = load_registry(settings)
    ensure_worker_topics(settings)
    prom = CollectorRegistry()
    metrics = Metrics.create(prom)
    if settings.metrics_port:
        try:
            start_http_server(settings.metrics_port, registry=prom)
        except OSError as exc:
            raise SystemExit(f"streamrec worker: cannot serve metrics on port {settings.metrics_port} ({exc.strerror}): "
                             "set STREAMREC_METRICS_PORT to a free port (0 turns the endpoint off)") from None
        logger.info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)
    app, _ = build_app(settings, registry, metrics)
    logger.info(
        "worker %s: %s -> %s (dead letters: %s), model %s on %s, batches of <= %d within %.3fs",
        settings.app_id, settings.events_topic, settings.recommendations_topic, settings.dlq_topic,
        registry.current.version, registry.current.device, settings.max_batch, settings.max_wait,
    )
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0

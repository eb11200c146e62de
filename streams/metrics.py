"""Prometheus metrics of the worker, as one injected bundle (seconds as the unit, bounded labels)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving.registry import REJECTED, SWAPPED
from streams.grading import KS, Grade
from streams.records import REASONS

SWAP_OUTCOMES = (SWAPPED, REJECTED)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
INFERENCE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 .. 1024


class Metrics(NamedTuple):
    """Every metric the worker exports; build with :meth:`create`."""

    event_to_recommendation: Histogram
    inference: Histogram
    batch_seconds: Histogram
    batch_size: Histogram
    events: Counter
    events_invalid: Counter
    recommendations: Counter
    events_refetched: Counter
    recovery_reseeks: Counter
    users_tracked: Gauge
    model_info: Gauge
    new_item_share: Gauge
    new_item_temperature: Gauge
    model_swaps: Counter
    consumer_lag: Gauge
    online_graded: Counter
    online_hits: Counter
    online_ndcg: Counter
    online_reciprocal_rank: Counter
    shadow_inference: Histogram
    catalog_items: Gauge
    catalog_updates: Counter
    catalog_invalid: Counter
    catalog_update_delay: Histogram
    items_embedded: Counter
    item_recommendable: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry, event_types: Iterable[str] = ()) -> Metrics:
        """Register the metrics in ``registry`` (tests pass a fresh one).

        Every labelled series with a known label set (event types, dead-letter reasons, swap outcomes) is
        created here at zero, so dashboards and ``increase()`` see it before its first event.
        """
        metrics = cls._register(registry)
        for event_type in event_types:
            metrics.events.labels(event_type)
        for reason in REASONS:
            metrics.events_invalid.labels(reason)
        for outcome in SWAP_OUTCOMES:
            metrics.model_swaps.labels(outcome)
        for reason in REASONS:
            metrics.catalog_invalid.labels(reason)
        return metrics

    @classmethod
    def _register(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            event_to_recommendation=Histogram(
                "streamrec_event_to_recommendation_seconds",
                "From the event's Kafka record timestamp to the recommendation's publish",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            inference=Histogram(
                "streamrec_inference_seconds",
                "One model call (a whole batch), including top-k",
                buckets=INFERENCE_BUCKETS,
                registry=registry,
            ),
            batch_seconds=Histogram(
                "streamrec_batch_seconds",
                "From a batch leaving the worker's buffer to its recommendations with the producer (ingest, score, "
                "publish): the worker's share of the event-to-recommendation latency",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            batch_size=Histogram(
                "streamrec_batch_size", "Users scored per model call", buckets=BATCH_BUCKETS, registry=registry
            ),
            events=Counter(
                "streamrec_events_total", "Valid events applied, by type", ["event_type"], registry=registry
            ),
            events_invalid=Counter(
                "streamrec_events_invalid_total",
                "Events sent to the dead-letter topic, by reason",
                ["reason"],
                registry=registry,
            ),
            recommendations=Counter(
                "streamrec_recommendations_total", "Recommendation records published", registry=registry
            ),
            online_graded=Counter(
                "streamrec_online_graded_total",
                "Events graded against the list served to their user just before (role: live or shadow)",
                ["role", "model", "event_type"],
                registry=registry,
            ),
            online_hits=Counter(
                "streamrec_online_hits_total",
                "Graded events whose item was within the first k of the served list",
                ["role", "model", "event_type", "k"],
                registry=registry,
            ),
            online_ndcg=Counter(
                "streamrec_online_ndcg_total",
                "Sum of NDCG@k over graded events (divide by streamrec_online_graded_total for the mean)",
                ["role", "model", "event_type", "k"],
                registry=registry,
            ),
            online_reciprocal_rank=Counter(
                "streamrec_online_reciprocal_rank_total",
                "Sum of reciprocal ranks over graded events (a miss counts 0)",
                ["role", "model", "event_type"],
                registry=registry,
            ),
            catalog_items=Gauge(
                "streamrec_catalog_items",
                "Items in the live catalog (the items topic), by scenario ('' = none) and availability",
                ["scenario", "available"],
                registry=registry,
            ),
            catalog_updates=Counter(
                "streamrec_catalog_updates_total",
                "Records of the items topic applied to the catalog",
                registry=registry,
            ),
            catalog_invalid=Counter(
                "streamrec_catalog_invalid_total",
                "Records of the items topic sent to the dead-letter topic, by reason",
                ["reason"],
                registry=registry,
            ),
            catalog_update_delay=Histogram(
                "streamrec_catalog_update_seconds",
                "From an items record's Kafka timestamp to the catalog applying it (the next batch uses it)",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
                registry=registry,
            ),
            items_embedded=Counter(
                "streamrec_catalog_items_embedded_total",
                "Rows computed from text for catalog items a model was not trained on (per item and model version)",
                registry=registry,
            ),
            item_recommendable=Histogram(
                "streamrec_item_recommendable_seconds",
                "From a new item's items record (Kafka timestamp) to the live model recommending it (rows added)",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
                registry=registry,
            ),
            shadow_inference=Histogram(
                "streamrec_shadow_inference_seconds",
                "One model call of the shadow model (never published)",
                buckets=INFERENCE_BUCKETS,
                registry=registry,
            ),
            events_refetched=Counter(
                "streamrec_events_refetched_total",
                "Events the consumer skipped (e.g. around a rebalance) that the worker read again and handled",
                registry=registry,
            ),
            recovery_reseeks=Counter(
                "streamrec_recovery_reseeks_total",
                "Times a table recovery that had stopped receiving its changelog records was sought back to them",
                registry=registry,
            ),
            users_tracked=Gauge(
                "streamrec_users_tracked", "Users with a sequence in this worker's table partitions", registry=registry
            ),
            model_info=Gauge(
                "streamrec_model_info", "The model version being served (value 1)", ["version"], registry=registry
            ),
            new_item_share=Gauge(
                "streamrec_new_item_share",
                "The live model's probability that a user's next item is a new one (0: no new items or no mixture)",
                registry=registry,
            ),
            new_item_temperature=Gauge(
                "streamrec_new_item_temperature",
                "The live model's temperature for the new items' scores (its own, chosen on validation, by default)",
                registry=registry,
            ),
            model_swaps=Counter(
                "streamrec_model_swaps_total",
                "Model version changes, by outcome (swapped, rejected)",
                ["outcome"],
                registry=registry,
            ),
            consumer_lag=Gauge(
                "streamrec_consumer_lag_messages",
                "Events not yet processed, per assigned partition",
                ["topic", "partition"],
                registry=registry,
            ),
        )


class OnlineCounters:
    """Counts graded events in the ``streamrec_online_*`` series (children looked up once per label set).

    :meth:`record` adds to plain sums; :meth:`flush` (once per batch) puts them into the series: one locked
    increment per series and batch instead of one to four per graded event.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._children: dict[tuple[str, str, str], tuple] = {}
        self._pending: dict[object, float] = {}  # series child -> amount not yet added

    def record(self, role: str, model: str, event_type: str, grade: Grade) -> None:
        key = (role, model, event_type)
        children = self._children.get(key)
        if children is None:
            m = self._metrics
            children = self._children[key] = (
                m.online_graded.labels(*key),
                m.online_reciprocal_rank.labels(*key),
                [(k, m.online_hits.labels(*key, str(k)), m.online_ndcg.labels(*key, str(k))) for k in KS],
            )
        graded, reciprocal_rank, by_k = children
        pending = self._pending
        pending[graded] = pending.get(graded, 0.0) + 1
        if grade.rank is None:  # a miss adds 0 to every sum
            return
        pending[reciprocal_rank] = pending.get(reciprocal_rank, 0.0) + grade.reciprocal_rank
        for k, hits, ndcg in by_k:
            if grade.rank < k:
                pending[hits] = pending.get(hits, 0.0) + 1
                pending[ndcg] = pending.get(ndcg, 0.0) + grade.ndcg(k)

    def flush(self) -> None:
        """Add what :meth:`record` counted since the last flush to the series."""
        pending, self._pending = self._pending, {}
        for child, amount in pending.items():
            child.inc(amount)

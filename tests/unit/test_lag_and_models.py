"""Lag per owned partition, and the model metrics across a hot swap, without faust or Kafka."""

import asyncio
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry

from serving.registry import REJECTED, SWAPPED, UNCHANGED
from streams.lag import LagTracker
from streams.metrics import Metrics
from streams.model_watch import ModelWatch
from streams.progress import Progress

TP = namedtuple("TP", "topic partition")


class FakeConsumer:
    def __init__(self, assignment, highwaters, positions):
        self.assigned, self.highwaters, self.positions = assignment, highwaters, positions

    def assignment(self):
        return self.assigned

    def highwater(self, tp):
        return self.highwaters.get(tp)

    async def position(self, tp):
        return self.positions.get(tp)


def test_lag_counts_from_the_newest_offset_done_with_and_drops_partitions_that_moved():
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    progress = Progress()
    tracker = LagTracker("events", progress, metrics.consumer_lag)
    p0, p1, other = TP("events", 0), TP("events", 1), TP("events-changelog", 0)
    progress.handled("events", 0, 41)  # offsets 0..41 done
    consumer = FakeConsumer({p0, p1, other}, {p0: 50, p1: 10, other: 99}, {p1: 7})
    health = asyncio.run(tracker.update(consumer))
    assert health == {("events", 0): (41, 8), ("events", 1): (None, 3)}
    assert registry.get_sample_value("streamrec_consumer_lag_messages", {"topic": "events", "partition": "0"}) == 8
    consumer.assigned = {p1}  # partition 0 moved to another worker
    asyncio.run(tracker.update(consumer))
    assert registry.get_sample_value("streamrec_consumer_lag_messages", {"topic": "events", "partition": "0"}) is None
    assert progress.offset(("events", 0)) is None
    p2 = TP("events", 2)  # assigned, never fetched from: no gauge, an unknown lag for the watchdog
    consumer.assigned = {p1, p2}
    health = asyncio.run(tracker.update(consumer))
    assert health[("events", 2)] == (None, None)
    assert registry.get_sample_value("streamrec_consumer_lag_messages", {"topic": "events", "partition": "2"}) is None


class Engine:
    def __init__(self, version):
        self.version = version

    def new_mix(self):
        return [0.05 * int(self.version[1:]), 1.5, 0.01]


class Registry:
    def __init__(self, outcomes):
        self.current = Engine("v1")
        self.outcomes = list(outcomes)

    def poll(self):
        outcome = self.outcomes.pop(0)
        if outcome == SWAPPED:
            self.current = Engine(f"v{int(self.current.version[1:]) + 1}")
        return outcome

    def poll_shadow(self):
        return UNCHANGED


def test_model_watch_keeps_one_version_series_and_counts_outcomes():
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    watch = ModelWatch(Registry([UNCHANGED, REJECTED, SWAPPED]), metrics, ThreadPoolExecutor(1))
    assert registry.get_sample_value("streamrec_model_info", {"version": "v1"}) == 1
    assert registry.get_sample_value("streamrec_new_item_share") == 0.05
    assert [asyncio.run(watch.poll()) for _ in range(3)] == [UNCHANGED, REJECTED, SWAPPED]
    assert registry.get_sample_value("streamrec_new_item_share") == 0.1  # read from the engine live now
    assert registry.get_sample_value("streamrec_new_item_temperature") == 1.5
    assert registry.get_sample_value("streamrec_model_info", {"version": "v1"}) is None
    assert registry.get_sample_value("streamrec_model_info", {"version": "v2"}) == 1
    assert registry.get_sample_value("streamrec_model_swaps_total", {"outcome": "rejected"}) == 1
    assert registry.get_sample_value("streamrec_model_swaps_total", {"outcome": "swapped"}) == 1


def test_metrics_bundle_creates_every_known_series_at_zero():
    registry = CollectorRegistry()
    Metrics.create(registry, ["view", "purchase"])
    assert registry.get_sample_value("streamrec_events_total", {"event_type": "purchase"}) == 0
    assert registry.get_sample_value("streamrec_events_invalid_total", {"reason": "internal_error"}) == 0
    assert registry.get_sample_value("streamrec_model_swaps_total", {"outcome": "rejected"}) == 0

"""Topic housekeeping against the real broker."""

import time
import uuid

import pytest

from streams.kafka_admin import (
    KafkaUnavailable,
    TopicMismatch,
    admin_client,
    delete_topics,
    ensure_topics,
    kafka_answers,
)

pytestmark = pytest.mark.kafka


def test_ensure_topics_creates_then_accepts_then_refuses_a_partition_mismatch(kafka):
    name = f"admin-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, {name: 3})
    admin = admin_client(kafka)
    try:
        (meta,) = admin.describe_topics([name])
        assert len(meta["partitions"]) == 3
    finally:
        admin.close()
    ensure_topics(kafka, {name: 3})  # idempotent
    with pytest.raises(TopicMismatch, match="STREAMREC_PARTITIONS=3"):
        ensure_topics(kafka, {name: 4})


def test_delete_topics_removes_the_run_s_topics_and_nothing_else(kafka):
    run = f"admin-{uuid.uuid4().hex[:8]}"
    ours = [f"{run}-events", f"{run}-user_sequences-changelog"]
    neighbour = f"{run}x-events"  # shares the run's name but not its "-" prefix
    ensure_topics(kafka, {name: 1 for name in [*ours, neighbour]})
    assert delete_topics(kafka, f"{run}-") == sorted(ours)
    admin = admin_client(kafka)
    try:
        deadline = time.monotonic() + 30  # deletion is asynchronous on the broker
        while set(ours) & set(admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = set(admin.list_topics())
    finally:
        admin.close()
    assert not set(ours) & left and neighbour in left
    assert delete_topics(kafka, f"{run}-") == []
    assert delete_topics("127.0.0.1:1", f"{run}-") == []  # clean-up never fails its caller
    delete_topics(kafka, neighbour)


def test_unreachable_broker_is_a_clear_error():
    assert kafka_answers("127.0.0.1:1", timeout=1) is False
    with pytest.raises(KafkaUnavailable, match="make kafka-start"):
        admin_client("127.0.0.1:1", timeout=1)

"""Topic housekeeping against the real broker."""

import uuid

import pytest

from streams.kafka_admin import KafkaUnavailable, TopicMismatch, admin_client, ensure_topics, kafka_answers

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


def test_unreachable_broker_is_a_clear_error():
    assert kafka_answers("127.0.0.1:1", timeout=1) is False
    with pytest.raises(KafkaUnavailable, match="make kafka-start"):
        admin_client("127.0.0.1:1", timeout=1)

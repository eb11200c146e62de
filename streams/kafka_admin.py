"""Kafka housekeeping with kafka-python: reachability and topic creation."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

logger = logging.getLogger(__name__)


class KafkaUnavailable(RuntimeError):
    """No broker answers at the bootstrap address."""


class TopicMismatch(RuntimeError):
    """A topic exists with a partition count the worker cannot use; the message says what to set."""


def admin_client(bootstrap: str, timeout: float = 10.0) -> KafkaAdminClient:
    """An admin client, or KafkaUnavailable with a sentence saying what to do."""
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            request_timeout_ms=10_000,
            bootstrap_timeout_ms=int(timeout * 1000),
            client_id="streamrec-admin",
        )
    except KafkaError as exc:
        raise unavailable(bootstrap, exc) from None


def unavailable(bootstrap: str, exc: Exception) -> KafkaUnavailable:
    """The error for an unreachable broker, with what to do."""
    return KafkaUnavailable(
        f"cannot reach Kafka at {bootstrap} ({exc.__class__.__name__}): start a local broker with "
        "`make kafka-start` or set STREAMREC_KAFKA_BOOTSTRAP to your cluster"
    )


def kafka_answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when a broker answers at ``bootstrap`` within ``timeout`` seconds."""
    try:
        admin_client(bootstrap, timeout).close()
    except KafkaUnavailable:
        return False
    return True


def events_waiting(bootstrap: str, group: str, tps: list[tuple[str, int]], timeout: float = 5.0) -> set:
    """Which of ``tps`` hold events beyond ``group``'s committed offset (from its start when none is committed).

    Raises:
        KafkaUnavailable, KafkaError: the broker cannot tell.
    """
    from kafka import KafkaConsumer, TopicPartition

    admin = admin_client(bootstrap, timeout)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, request_timeout_ms=10_000)
    try:
        partitions = [TopicPartition(topic, partition) for topic, partition in tps]
        offsets = admin.list_group_offsets({group: partitions}).get(group, {})
        committed = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta is not None}
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        return {
            (tp.topic, tp.partition)
            for tp in partitions
            if ends[tp] > max(committed.get((tp.topic, tp.partition), -1), starts[tp])
        }
    finally:
        consumer.close()
        admin.close()


def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a benchmark's or a chaos run's own topics).

    Clean-up never fails its caller: a broker that cannot be reached or refuses is logged, and nothing is deleted.
    """
    if not prefix:
        raise ValueError("delete_topics needs a non-empty prefix")
    try:
        admin = admin_client(bootstrap)
        try:
            names = sorted(name for name in admin.list_topics() if name.startswith(prefix))
            if names:
                admin.delete_topics(names)
                logger.info("deleted %d topics %s*", len(names), prefix)
            return names
        finally:
            admin.close()
    except (KafkaUnavailable, KafkaError) as exc:
        logger.warning("topics %s* left on the broker: %s", prefix, exc)
        return []


def ensure_topics(
    bootstrap: str,
    partitions: dict[str, int],
    replication_factor: int = 1,
    strict: bool = True,
    configs: dict[str, str] | None = None,
) -> None:
    """Create missing topics (with ``configs``, e.g. compaction); with ``strict``, refuse an existing topic whose
    partition count differs.

    Raises:
        KafkaUnavailable: no broker.
        TopicMismatch: a topic exists with another partition count (tables must be co-partitioned).
    """
    admin = admin_client(bootstrap)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, count, replication_factor, topic_configs=configs or {})
            for name, count in partitions.items()
            if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing)
                logger.info("created topics %s", ", ".join(t.name for t in missing))
            except TopicAlreadyExistsError:
                pass
        for meta in admin.describe_topics([n for n in partitions if n in existing]) if strict else ():
            name = meta.get("name", meta.get("topic"))
            have, want = len(meta["partitions"]), partitions[name]
            if have != want:
                raise TopicMismatch(
                    f"topic {name!r} has {have} partitions but STREAMREC_PARTITIONS is {want}: "
                    f"set STREAMREC_PARTITIONS={have} (the sequence table must match the events topic)"
                )
    finally:
        admin.close()

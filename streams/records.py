"""Topic contracts: parsing events, building recommendation and dead-letter records."""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from serving.engine import ScoredItem

# Reasons an event is sent to the dead-letter topic (a bounded set: they label a metric).
OVERSIZED = "oversized"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
BAD_KEY = "bad_key"
INTERNAL_ERROR = "internal_error"  # the worker failed on an event it accepted: a bug, never the sender's fault
REASONS = (OVERSIZED, NOT_JSON, NOT_OBJECT, MISSING_FIELD, BAD_FIELD, UNKNOWN_EVENT_TYPE, BAD_KEY, INTERNAL_ERROR)

DEFAULT_EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
DEFAULT_MAX_EVENT_BYTES = 16_384
MAX_ID_CHARS = 256
MAX_TS = 253402300800.0  # 10000-01-01T00:00:00Z: later instants have no ISO-8601 form
# A dead letter carries at most this much of the original value and key (base64 grows it by 4/3), so it
# always fits the broker's default 1 MB message limit; longer ones are cut, with their size and sha256.
DLQ_MAX_VALUE_BYTES = 64 * 1024
DLQ_MAX_KEY_BYTES = 1024


class InvalidEvent(ValueError):
    """An event that breaks the `events` contract; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Event:
    """One valid user event (the `events` topic contract).

    Never mutated, yet not declared frozen: a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, about five times the cost of a plain one, and the worker builds this and the other
    per-event records (``Source``, ``UserHistory``, ``Update``, ``Grade``) for every event.
    """

    user_id: str
    item_id: str
    event_type: str
    ts: float
    scenario: str | None = None
    event_id: str | None = None


def ident_field(payload: dict[str, Any], field: str, required: bool) -> str | None:
    if field not in payload or payload[field] is None:
        if required:
            raise InvalidEvent(MISSING_FIELD, f"'{field}' is required")
        return None
    value = payload[field]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent(BAD_FIELD, f"'{field}' must be a string or an integer, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise InvalidEvent(BAD_FIELD, f"'{field}' must not be empty")
    if len(text) > MAX_ID_CHARS:
        raise InvalidEvent(BAD_FIELD, f"'{field}' is longer than {MAX_ID_CHARS} characters")
    return text


def json_problem(raw: bytes, exc: ValueError) -> str:
    """What is wrong with a payload that is not JSON, in a few words."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not UTF-8 ({bad.reason} at byte {bad.start})"
    return f"not JSON ({str(exc)[:100]})"


def parse_ts(value: Any) -> float:
    """Epoch seconds (int/float) or an ISO-8601 string (no zone = UTC) to epoch seconds.

    One rule for every format: the instant must lie between 1970-01-01 and 9999-12-31 (UTC).

    Raises:
        InvalidEvent: ``bad_field`` for anything else.
    """
    if isinstance(value, bool):
        raise InvalidEvent(BAD_FIELD, "'ts' must be epoch seconds or ISO-8601, got a boolean")
    if isinstance(value, (int, float)):
        try:
            ts = float(value)
        except OverflowError:
            ts = math.inf
        shown = repr(value)[:40]
    elif isinstance(value, str):
        shown = repr(value[:40])
        try:
            moment = datetime.fromisoformat(value.strip())
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            ts = moment.timestamp()
        except (ValueError, OverflowError):
            raise InvalidEvent(BAD_FIELD, f"'ts' is not ISO-8601: {shown}") from None
    else:
        raise InvalidEvent(BAD_FIELD, f"'ts' must be epoch seconds or ISO-8601, got {type(value).__name__}")
    if not (math.isfinite(ts) and 0.0 <= ts < MAX_TS):
        raise InvalidEvent(BAD_FIELD, f"'ts' must lie between 1970-01-01 and 9999-12-31 UTC, got {shown}")
    return ts


def parse_event(
    raw: bytes | None,
    event_types: Collection[str],
    max_bytes: int,
    key: bytes | None = None,
    require_key: bool = False,
) -> Event:
    """Validate one `events` payload.

    Args:
        raw: the Kafka message value, untouched.
        event_types: accepted ``event_type`` values.
        max_bytes: larger payloads are refused.
        key: the Kafka message key; when given it must equal ``user_id``.
        require_key: refuse a message without a key (the worker does: the key picks the partition,
            and a user's sequence must live in one partition).

    Raises:
        InvalidEvent: with a reason from REASONS and a human-readable detail.
    """
    if raw is None:
        raise InvalidEvent(NOT_JSON, "empty message (null value)")
    if len(raw) > max_bytes:
        raise InvalidEvent(OVERSIZED, f"{len(raw)} bytes, the limit is {max_bytes}")
    try:
        payload = orjson.loads(raw)  # strict: UTF-8 only, no NaN/Infinity, no lone surrogates, depth <= 1024
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(NOT_JSON, json_problem(raw, exc)) from None
    if not isinstance(payload, dict):
        raise InvalidEvent(NOT_OBJECT, f"a JSON object is required, got {type(payload).__name__}")
    user_id = ident_field(payload, "user_id", required=True)
    item_id = ident_field(payload, "item_id", required=True)
    if "event_type" not in payload:
        raise InvalidEvent(MISSING_FIELD, "'event_type' is required")
    event_type = payload["event_type"]
    if not isinstance(event_type, str) or event_type not in event_types:
        raise InvalidEvent(
            UNKNOWN_EVENT_TYPE, f"'event_type' {str(event_type)[:40]!r} is not one of {sorted(event_types)}"
        )
    if "ts" not in payload:
        raise InvalidEvent(MISSING_FIELD, "'ts' is required")
    ts = parse_ts(payload["ts"])
    scenario = ident_field(payload, "scenario", required=False)
    event_id = ident_field(payload, "event_id", required=False)
    if key is None and require_key:
        raise InvalidEvent(BAD_KEY, "events must be keyed by user_id (the message has no key)")
    if key is not None and key != user_id.encode("utf-8"):
        raise InvalidEvent(BAD_KEY, "events must be keyed by user_id (key and user_id differ)")
    assert user_id is not None and item_id is not None
    return Event(user_id, item_id, event_type, ts, scenario, event_id)


def _bounded_b64(data: bytes | None, limit: int, name: str, record: dict[str, Any]) -> None:
    """Put ``data`` into ``record`` as base64, cut to ``limit`` bytes with its size and sha256 when longer."""
    if data is None:
        record[f"{name}_b64"] = None
        return
    record[f"{name}_b64"] = base64.b64encode(data[:limit]).decode()
    if len(data) > limit:
        record[f"{name}_truncated"] = True
        record[f"{name}_size"] = len(data)
        record[f"{name}_sha256"] = hashlib.sha256(data).hexdigest()


def dead_letter_key(key: bytes | None) -> bytes:
    """The Kafka key of a dead letter: the original key, cut to DLQ_MAX_KEY_BYTES."""
    return (key or b"")[:DLQ_MAX_KEY_BYTES]


def dead_letter(
    raw: bytes | None,
    key: bytes | None,
    error: InvalidEvent,
    topic: str,
    partition: int,
    offset: int,
    now: float,
) -> bytes:
    """The `events-dlq` record: the original bytes (base64), where they came from, and why.

    Values longer than DLQ_MAX_VALUE_BYTES (keys: DLQ_MAX_KEY_BYTES) are cut; the record then says so
    (``value_truncated``) and carries the full ``value_size`` and ``value_sha256``.
    """
    record: dict[str, Any] = {
        "reason": error.reason,
        "detail": error.detail[:1000],
        "source": {"topic": topic, "partition": partition, "offset": offset},
    }
    _bounded_b64(key, DLQ_MAX_KEY_BYTES, "key", record)
    _bounded_b64(raw, DLQ_MAX_VALUE_BYTES, "value", record)
    record["failed_ts"] = now
    return orjson.dumps(record)


def recommendation(
    user_id: str,
    items: Sequence[ScoredItem],
    model_version: str,
    event_ts: float,
    produced_ts: float,
    trigger_event_id: str | None,
    scenario: str | None = None,
) -> bytes:
    """The `recommendations` record for one user, as UTF-8 JSON (``scenario``: the triggering event's)."""
    record = {
        "user_id": user_id,
        "items": [{"item_id": it.item_id, "score": round(it.score, 6), "because": it.because} for it in items],
        "model_version": model_version,
        "event_ts": event_ts,
        "produced_ts": produced_ts,
        "trigger_event_id": trigger_event_id,
        "scenario": scenario,
    }
    return orjson.dumps(record)

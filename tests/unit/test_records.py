"""Validation of the `events` contract and the records we publish."""

import base64
import json

import pytest

from serving.engine import ScoredItem
from streams.records import (
    BAD_FIELD,
    BAD_KEY,
    DLQ_MAX_KEY_BYTES,
    DLQ_MAX_VALUE_BYTES,
    MISSING_FIELD,
    NOT_JSON,
    NOT_OBJECT,
    OVERSIZED,
    UNKNOWN_EVENT_TYPE,
    InvalidEvent,
    dead_letter,
    dead_letter_key,
    parse_event,
    parse_ts,
    recommendation,
)

TYPES = ("view", "click", "add_to_cart", "purchase")


def parse(payload, key=None, max_bytes=10_000):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_event(raw, TYPES, max_bytes, key=key)


def test_valid_event_with_all_fields():
    event = parse(
        {
            "user_id": "u1",
            "item_id": "i2",
            "event_type": "click",
            "ts": 1763800000.5,
            "scenario": "shop",
            "event_id": "e1",
        },
        key=b"u1",
    )
    assert (event.user_id, event.item_id, event.event_type, event.ts) == ("u1", "i2", "click", 1763800000.5)
    assert (event.scenario, event.event_id) == ("shop", "e1")


def test_integer_ids_are_normalised_to_strings():
    event = parse({"user_id": 42, "item_id": 7, "event_type": "view", "ts": 10}, key=b"42")
    assert event.user_id == "42" and event.item_id == "7" and event.ts == 10.0


def test_iso_timestamps():
    assert parse_ts("2025-11-22T08:26:40Z") == 1763800000.0
    assert parse_ts("2025-11-22T09:26:40+01:00") == 1763800000.0
    assert parse_ts("2025-11-22T08:26:40") == 1763800000.0  # naive = UTC


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"not json", NOT_JSON),
        (b"\xff\xfe", NOT_JSON),
        (b"[1, 2]", NOT_OBJECT),
        (b'"text"', NOT_OBJECT),
        ({"item_id": "i", "event_type": "click", "ts": 1}, MISSING_FIELD),
        ({"user_id": "u", "event_type": "click", "ts": 1}, MISSING_FIELD),
        ({"user_id": "u", "item_id": "i", "ts": 1}, MISSING_FIELD),
        ({"user_id": "u", "item_id": "i", "event_type": "click"}, MISSING_FIELD),
        ({"user_id": "", "item_id": "i", "event_type": "click", "ts": 1}, BAD_FIELD),
        ({"user_id": "u", "item_id": [1], "event_type": "click", "ts": 1}, BAD_FIELD),
        ({"user_id": True, "item_id": "i", "event_type": "click", "ts": 1}, BAD_FIELD),
        ({"user_id": "u", "item_id": "i", "event_type": "click", "ts": "yesterday"}, BAD_FIELD),
        ({"user_id": "u", "item_id": "i", "event_type": "click", "ts": -5}, BAD_FIELD),
        ({"user_id": "u", "item_id": "i", "event_type": "click", "ts": None}, BAD_FIELD),
        ({"user_id": "u", "item_id": "i", "event_type": "hover", "ts": 1}, UNKNOWN_EVENT_TYPE),
        ({"user_id": "u", "item_id": "i", "event_type": 3, "ts": 1}, UNKNOWN_EVENT_TYPE),
        ({"user_id": "u", "item_id": "x" * 300, "event_type": "click", "ts": 1}, BAD_FIELD),
    ],
)
def test_invalid_events_have_a_reason(payload, reason):
    with pytest.raises(InvalidEvent) as info:
        parse(payload)
    assert info.value.reason == reason
    assert info.value.detail


def test_oversized_and_wrong_key():
    with pytest.raises(InvalidEvent) as info:
        parse({"user_id": "u", "item_id": "i", "event_type": "click", "ts": 1, "pad": "x" * 500}, max_bytes=200)
    assert info.value.reason == OVERSIZED
    with pytest.raises(InvalidEvent) as info:
        parse({"user_id": "u1", "item_id": "i", "event_type": "click", "ts": 1}, key=b"u2")
    assert info.value.reason == BAD_KEY
    raw = json.dumps({"user_id": "u1", "item_id": "i", "event_type": "click", "ts": 1}).encode()
    with pytest.raises(InvalidEvent, match="no key") as info:
        parse_event(raw, TYPES, 10_000, key=None, require_key=True)
    assert info.value.reason == BAD_KEY
    assert parse_event(raw, TYPES, 10_000, key=None).user_id == "u1"


def test_dead_letter_keeps_original_bytes_and_source():
    raw, key = b"\x00garbage{", b"u9"
    record = json.loads(dead_letter(raw, key, InvalidEvent(NOT_JSON, "boom"), "events", 3, 41, 123.0))
    assert base64.b64decode(record["value_b64"]) == raw
    assert base64.b64decode(record["key_b64"]) == key
    assert record["source"] == {"topic": "events", "partition": 3, "offset": 41}
    assert record["reason"] == NOT_JSON and record["detail"] == "boom"


def test_recommendation_record_follows_the_contract():
    items = [ScoredItem("i7", 3.25, "i1"), ScoredItem("i8", 1.5, None)]
    record = json.loads(recommendation("u1", items, "v1", 10.0, 11.0, "e1", "shop"))
    assert record == {
        "user_id": "u1",
        "items": [{"item_id": "i7", "score": 3.25, "because": "i1"}, {"item_id": "i8", "score": 1.5, "because": None}],
        "model_version": "v1",
        "event_ts": 10.0,
        "produced_ts": 11.0,
        "trigger_event_id": "e1",
        "scenario": "shop",
    }
    assert json.loads(recommendation("u1", items, "v1", 10.0, 11.0, None))["scenario"] is None


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"user_id": "u", "item_id": "i", "event_type": "click", "ts": 1}).encode("utf-16"),
        json.dumps({"user_id": "u", "item_id": "i", "event_type": "click", "ts": 1}).encode("utf-32"),
        b"\xef\xbb\xbf" + json.dumps({"user_id": "u", "item_id": "i", "event_type": "click", "ts": 1}).encode(),
        b'{"user_id": "u", "item_id": "i", "event_type": "click", "ts": NaN}',
        b'{"user_id": "u", "item_id": "i", "event_type": "click", "ts": Infinity}',
        b'{"user_id": "u", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"user_id": "u", "item_id": "i", "event_type": "click", "ts": ' + b"9" * 5000 + b"}",
    ],
    ids=["utf-16", "utf-32", "bom", "nan", "infinity", "deep", "huge-int"],
)
def test_only_plain_utf8_json_is_accepted(raw):
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, TYPES, 100_000, key=b"u")
    assert info.value.reason == NOT_JSON


@pytest.mark.parametrize("field", ["user_id", "item_id", "scenario", "event_id"])
def test_unpaired_surrogates_are_refused(field):
    payload = {"user_id": "u", "item_id": "i", "event_type": "click", "ts": 1, field: "SURROGATE"}
    raw = json.dumps(payload).replace("SURROGATE", "a\\ud800b").encode()
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, TYPES, 10_000)
    assert info.value.reason == NOT_JSON and "surrogate" in info.value.detail


@pytest.mark.parametrize(
    "ts",
    [-1, -0.5, "1969-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", 1e20, 1e999, "10000-01-01T00:00:00Z", "1763800000"],
)
def test_one_rule_for_timestamps_in_every_format(ts):
    with pytest.raises(InvalidEvent) as info:
        parse_ts(ts)
    assert info.value.reason == BAD_FIELD


def test_the_epoch_itself_is_accepted_as_number_and_as_iso():
    assert parse_ts(0) == parse_ts("1970-01-01T00:00:00Z") == 0.0


def test_key_must_be_the_exact_utf8_user_id():
    raw = json.dumps({"user_id": "\ufffd", "item_id": "i", "event_type": "click", "ts": 1}).encode()
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, TYPES, 10_000, key=b"\xff")  # decodes to U+FFFD with errors="replace"
    assert info.value.reason == BAD_KEY
    assert parse_event(raw, TYPES, 10_000, key="\ufffd".encode()).user_id == "\ufffd"


def test_dead_letters_of_huge_payloads_are_cut_with_size_and_hash():
    import hashlib

    raw, key = b"x" * 900_000, b"k" * 5000
    record = dead_letter(raw, key, InvalidEvent(OVERSIZED, "big"), "events", 0, 7, 1.0)
    assert len(record) < 200_000  # fits the broker's default 1 MB message limit with room to spare
    parsed = json.loads(record)
    kept = base64.b64decode(parsed["value_b64"])
    assert raw.startswith(kept) and len(kept) == DLQ_MAX_VALUE_BYTES
    assert parsed["value_truncated"] is True and parsed["value_size"] == len(raw)
    assert parsed["value_sha256"] == hashlib.sha256(raw).hexdigest()
    assert parsed["key_truncated"] is True and parsed["key_size"] == 5000
    assert len(dead_letter_key(key)) == DLQ_MAX_KEY_BYTES
    small = json.loads(dead_letter(b"abc", b"u", InvalidEvent(NOT_JSON, "x"), "events", 0, 1, 1.0))
    assert "value_truncated" not in small and base64.b64decode(small["value_b64"]) == b"abc"

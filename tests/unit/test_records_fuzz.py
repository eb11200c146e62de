"""Property: whatever the bytes, parsing yields an event or an InvalidEvent with a known reason."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.records import REASONS, Event, InvalidEvent, parse_event

TYPES = ("view", "click", "add_to_cart", "purchase")
VALID = {
    "user_id": "u1",
    "item_id": "i2",
    "event_type": "click",
    "ts": 1763800000.5,
    "scenario": "shop",
    "event_id": "e1",
}


def outcome(raw, key):
    """The parse result, asserting it is one of the two allowed kinds."""
    try:
        event = parse_event(raw, TYPES, 16_384, key=key, require_key=True)
    except InvalidEvent as exc:
        assert exc.reason in REASONS and exc.detail
        return exc
    assert isinstance(event, Event)
    # an accepted event is what the contract says: its ids are UTF-8 encodable and its key is the user id
    assert key == event.user_id.encode("utf-8")
    event.item_id.encode("utf-8")
    assert 0 <= event.ts < 253402300800
    return event


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(st.none(), st.binary(max_size=300)), key=st.one_of(st.none(), st.binary(max_size=20)))
def test_arbitrary_bytes(raw, key):
    outcome(raw, key)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(VALID) + ["extra"]), value=json_values, drop=st.booleans())
def test_mutated_fields_of_a_valid_event(field, value, drop):
    payload = dict(VALID)
    if drop:
        payload.pop(field, None)
    else:
        payload[field] = value
    raw = json.dumps(payload, allow_nan=True).encode("utf-8", "surrogatepass")
    outcome(raw, b"u1")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(min_value=0, max_value=200),
    junk=st.binary(min_size=1, max_size=8),
    mode=st.sampled_from(["insert", "replace", "truncate"]),
)
def test_byte_mutations_of_a_valid_event(position, junk, mode):
    raw = json.dumps(VALID).encode()
    position = position % len(raw)
    if mode == "insert":
        raw = raw[:position] + junk + raw[position:]
    elif mode == "replace":
        raw = raw[:position] + junk + raw[position + len(junk) :]
    else:
        raw = raw[:position]
    outcome(raw, b"u1")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=40), encoding=st.sampled_from(["utf-16", "utf-16-le", "utf-32", "utf-32-be"]))
def test_other_encodings_are_refused(text, encoding):
    raw = json.dumps({**VALID, "item_id": text or "x"}).encode(encoding)
    result = outcome(raw, b"u1")
    assert isinstance(result, InvalidEvent) and result.reason == "not_json"

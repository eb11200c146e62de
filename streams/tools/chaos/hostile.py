"""Payloads that break the `events` contract in every way we know of: the chaos suite's hostile input."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

Message = tuple[bytes | None, bytes | None]  # (key, value)


def _event(user: str, item: str, **overrides: object) -> dict:
    event: dict = {"user_id": user, "item_id": item, "event_type": "click", "ts": 1763800000.5, "event_id": None}
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not _DROP}


_DROP = object()


def _json(user: str, item: str, **overrides: object) -> Message:
    return user.encode(), json.dumps(_event(user, item, **overrides)).encode()


def _raw(user: str, text: str) -> Message:
    return user.encode(), text.encode("utf-8", "surrogatepass")


def _deep(depth: int) -> bytes:
    return b'{"user_id": "u", "x": ' + b"[" * depth + b"]" * depth + b"}"


# name -> (rng, user, item) -> (key, value). Every payload is invalid under the contract (docs: README).
KINDS: dict[str, Callable[[random.Random, str, str], Message]] = {
    # not UTF-8 JSON
    "random_bytes": lambda r, u, i: (u.encode(), bytes([0xFF, 0xFE]) + r.randbytes(r.randint(1, 200))),
    "truncated_json": lambda r, u, i: (u.encode(), _json(u, i)[1][: r.randint(1, 20)]),
    "trailing_garbage": lambda r, u, i: (u.encode(), _json(u, i)[1] + b"}{"),
    "utf16_json": lambda r, u, i: (u.encode(), json.dumps(_event(u, i)).encode("utf-16")),
    "utf16le_json": lambda r, u, i: (u.encode(), json.dumps(_event(u, i)).encode("utf-16-le")),
    "utf32_json": lambda r, u, i: (u.encode(), json.dumps(_event(u, i)).encode("utf-32")),
    "bom_json": lambda r, u, i: (u.encode(), b"\xef\xbb\xbf" + _json(u, i)[1]),
    "latin1_json": lambda r, u, i: (
        u.encode(),
        json.dumps(_event(u, i + "\u00e9"), ensure_ascii=False).encode("latin-1"),
    ),
    "overlong_utf8": lambda r, u, i: (u.encode(), b'{"user_id": "\xc0\xaf"}'),
    "empty": lambda r, u, i: (u.encode(), b""),
    "null_value": lambda r, u, i: (u.encode(), None),
    "whitespace": lambda r, u, i: (u.encode(), b"   \n"),
    "nan_ts": lambda r, u, i: _raw(u, json.dumps(_event(u, i)).replace("1763800000.5", "NaN")),
    "infinity_ts": lambda r, u, i: _raw(u, json.dumps(_event(u, i)).replace("1763800000.5", "Infinity")),
    "deep_nesting": lambda r, u, i: (u.encode(), _deep(r.randint(3000, 7000))),
    "huge_integer": lambda r, u, i: _raw(u, json.dumps(_event(u, i)).replace("1763800000.5", "9" * 5000)),
    "single_quotes": lambda r, u, i: _raw(u, str(_event(u, i))),
    # JSON, but not an object
    "array": lambda r, u, i: (u.encode(), json.dumps([_event(u, i)]).encode()),
    "string": lambda r, u, i: (u.encode(), b'"click"'),
    "number": lambda r, u, i: (u.encode(), b"42"),
    "boolean": lambda r, u, i: (u.encode(), b"true"),
    "json_null": lambda r, u, i: (u.encode(), b"null"),
    # missing fields
    "no_user_id": lambda r, u, i: _json(u, i, user_id=_DROP),
    "no_item_id": lambda r, u, i: _json(u, i, item_id=_DROP),
    "no_event_type": lambda r, u, i: _json(u, i, event_type=_DROP),
    "no_ts": lambda r, u, i: _json(u, i, ts=_DROP),
    "null_item_id": lambda r, u, i: _json(u, i, item_id=None),
    "empty_object": lambda r, u, i: (u.encode(), b"{}"),
    # bad fields
    "empty_item_id": lambda r, u, i: _json(u, i, item_id=""),
    "blank_item_id": lambda r, u, i: _json(u, i, item_id="   "),
    "bool_item_id": lambda r, u, i: _json(u, i, item_id=True),
    "float_item_id": lambda r, u, i: _json(u, i, item_id=1.5),
    "list_item_id": lambda r, u, i: _json(u, i, item_id=[i]),
    "object_item_id": lambda r, u, i: _json(u, i, item_id={"id": i}),
    "long_item_id": lambda r, u, i: _json(u, i, item_id="x" * r.randint(257, 5000)),
    "surrogate_item_id": lambda r, u, i: _raw(u, json.dumps(_event(u, i)).replace(f'"{i}"', '"\\ud800x"', 1)),
    "surrogate_pair_half": lambda r, u, i: _raw(u, json.dumps(_event(u, i)).replace(f'"{i}"', '"a\\udfff"', 1)),
    "surrogate_scenario": lambda r, u, i: _raw(u, json.dumps(_event(u, i, scenario="s")).replace('"s"', '"\\ud83d"')),
    "surrogate_event_id": lambda r, u, i: _raw(u, json.dumps(_event(u, i, event_id="e")).replace('"e"', '"\\udc00"')),
    "bad_scenario": lambda r, u, i: _json(u, i, scenario=["shop"]),
    "bad_event_id": lambda r, u, i: _json(u, i, event_id={"id": 1}),
    "negative_ts": lambda r, u, i: _json(u, i, ts=-r.randint(1, 10**9)),
    "huge_ts": lambda r, u, i: _json(u, i, ts=1e20),
    "overflow_ts": lambda r, u, i: _raw(u, json.dumps(_event(u, i)).replace("1763800000.5", "1e999")),
    "bool_ts": lambda r, u, i: _json(u, i, ts=True),
    "null_ts": lambda r, u, i: _json(u, i, ts=None),
    "list_ts": lambda r, u, i: _json(u, i, ts=[1]),
    "numeric_string_ts": lambda r, u, i: _json(u, i, ts="1763800000"),
    "word_ts": lambda r, u, i: _json(u, i, ts="yesterday"),
    "iso_before_1970": lambda r, u, i: _json(u, i, ts="1969-07-20T20:17:00Z"),
    "iso_year_one_east": lambda r, u, i: _json(u, i, ts="0001-01-01T00:00:00+14:00"),
    "iso_bad_month": lambda r, u, i: _json(u, i, ts="2025-13-01T00:00:00Z"),
    "iso_with_garbage": lambda r, u, i: _json(u, i, ts="2025-11-22T08:26:40Z junk"),
    # event types
    "unknown_event_type": lambda r, u, i: _json(u, i, event_type="hover"),
    "numeric_event_type": lambda r, u, i: _json(u, i, event_type=3),
    "null_event_type": lambda r, u, i: _json(u, i, event_type=None),
    "upper_event_type": lambda r, u, i: _json(u, i, event_type="CLICK"),
    "list_event_type": lambda r, u, i: _json(u, i, event_type=["click"]),
    # keys
    "no_key": lambda r, u, i: (None, _json(u, i)[1]),
    "other_key": lambda r, u, i: (b"someone-else", _json(u, i)[1]),
    "padded_key": lambda r, u, i: ((u + " ").encode(), _json(u, i)[1]),
    "invalid_utf8_key": lambda r, u, i: (b"\xff" + u.encode(), _json(u, i)[1]),
    "huge_key": lambda r, u, i: (b"k" * r.randint(20_000, 200_000), _json(u, i)[1]),
    "replacement_char_key": lambda r, u, i: (b"\xff", _json("\ufffd", i)[1]),
    # size
    "oversized": lambda r, u, i: _json(u, i, pad="x" * r.randint(17_000, 60_000)),
    "oversized_900k": lambda r, u, i: _json(u, i, pad="y" * 900_000),
}


def hostile_messages(
    n: int, users: list[str], items: list[str], seed: int = 0, kinds: list[str] | None = None
) -> list[tuple[str, bytes | None, bytes | None]]:
    """``n`` hostile messages ``(kind, key, value)``, cycling through ``kinds`` (default: all of them)."""
    rng = random.Random(seed)
    names = kinds or list(KINDS)
    out = []
    for number in range(n):
        kind = names[number % len(names)]
        key, value = KINDS[kind](rng, rng.choice(users), rng.choice(items))
        out.append((kind, key, value))
    return out

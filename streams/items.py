"""The `items` topic contract: catalog updates keyed by item id (compacted; a null value removes the item)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from streams.records import BAD_FIELD, BAD_KEY, NOT_JSON, NOT_OBJECT, OVERSIZED, InvalidEvent, ident_field, json_problem

MAX_ITEM_BYTES = 65_536
MAX_TEXT_CHARS = 8_192


@dataclass(frozen=True, slots=True)
class Item:
    """One catalog entry."""

    item_id: str
    title: str = ""
    text: str = ""
    category: str | None = None
    scenario: str | None = None
    available: bool = True


def _text(payload: dict[str, Any], field: str) -> str:
    value = payload.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidEvent(BAD_FIELD, f"'{field}' must be a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidEvent(BAD_FIELD, f"'{field}' is longer than {MAX_TEXT_CHARS} characters")
    return value


def parse_item(raw: bytes | None, key: bytes | None, max_bytes: int = MAX_ITEM_BYTES) -> Item | None:
    """Validate one `items` record; ``None`` for a tombstone (a null value: the item is removed).

    The key must be the item id (the topic is compacted by it).

    Raises:
        InvalidEvent: with a reason from ``streams.records.REASONS``.
    """
    if key is None:
        raise InvalidEvent(BAD_KEY, "items must be keyed by item_id (the message has no key)")
    if raw is None:
        return None
    if len(raw) > max_bytes:
        raise InvalidEvent(OVERSIZED, f"{len(raw)} bytes, the limit is {max_bytes}")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(NOT_JSON, json_problem(raw, exc)) from None
    if not isinstance(payload, dict):
        raise InvalidEvent(NOT_OBJECT, f"a JSON object is required, got {type(payload).__name__}")
    item_id = ident_field(payload, "item_id", required=True)
    assert item_id is not None
    if key != item_id.encode("utf-8"):
        raise InvalidEvent(BAD_KEY, "items must be keyed by item_id (key and item_id differ)")
    available = payload.get("available", True)
    if not isinstance(available, bool):
        raise InvalidEvent(BAD_FIELD, f"'available' must be true or false, got {str(available)[:40]!r}")
    return Item(
        item_id,
        _text(payload, "title"),
        _text(payload, "text"),
        ident_field(payload, "category", required=False),
        ident_field(payload, "scenario", required=False),
        available,
    )


def item_record(item: Item) -> bytes:
    """The `items` value of ``item`` (what `streamrec items` publishes)."""
    return orjson.dumps(
        {
            "item_id": item.item_id,
            "title": item.title,
            "text": item.text,
            "category": item.category,
            "scenario": item.scenario,
            "available": item.available,
        }
    )

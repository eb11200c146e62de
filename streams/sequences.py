"""Pure sequence operations: the per-user state of the table and batch de-duplication."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(slots=True)  # built per event: not frozen (see streams.records.Event); never mutated
class UserHistory:
    """A user's recent items (external ids, oldest first) with the event type and scenario of each (``""``: the
    event named no scenario), the last applied source offset and, once written, the lists served for that
    sequence (online grading: see ``streams.grading.ServedLists``).

    The offset makes updates idempotent: a replayed event (offset not above it) is not applied twice.
    ``types`` and ``scenarios`` belong to the newest items: a value written before sequences kept them has none,
    and its older items stay without (the model reads them as "other").
    """

    items: tuple[str, ...] = ()
    offset: int = -1
    served: Mapping[str, Any] | None = None
    types: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()

    def serving(self, served: Mapping[str, Any]) -> UserHistory:
        """The same sequence with the lists served for it."""
        return UserHistory(self.items, self.offset, served, self.types, self.scenarios)

    def to_json(self) -> dict[str, Any]:
        """The table value (JSON-serialisable)."""
        value: dict[str, Any] = {  # tuples: JSON arrays, without a copy into lists
            "items": self.items,
            "offset": self.offset,
            "types": self.types,
            "scenarios": self.scenarios,
        }
        if self.served is not None:
            value["served"] = self.served
        return value

    def to_bytes(self) -> bytes:
        """The table value as stored and changelogged: :meth:`to_json` as UTF-8 JSON.

        Bytes, not a dict: one object per user that the garbage collector never walks (a dict with three lists
        per user made the worker's full collections take longer with every user it holds) and about a quarter
        of the memory; the changelog records are the JSON they always were.
        """
        return _table_value(self.to_json())

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> UserHistory:
        """Inverse of :meth:`to_bytes` (and of the JSON that faust's own serializer wrote before: the same
        records); ``None`` (no value yet) is the empty history."""
        return cls.from_json(orjson.loads(raw)) if raw else cls()

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> UserHistory:
        """Inverse of :meth:`to_json`, which also reads values of the older shape (items and offset only);
        ``None`` (no value yet) is the empty history."""
        if not value:
            return cls()
        items = tuple(value.get("items", ()))
        types = _newest(value.get("types", ()), len(items))
        scenarios = _newest(value.get("scenarios", ()), len(items))
        return cls(items, int(value.get("offset", -1)), value.get("served"), types, scenarios)


def _newest(values: list[str] | tuple[str, ...], n: int) -> tuple[str, ...]:
    """The newest ``n`` of ``values`` (all when there are fewer), as a tuple."""
    if len(values) > n:
        return tuple(values[-n:]) if n else ()
    return tuple(values)


def apply_event(
    history: UserHistory, item_id: str, offset: int, max_len: int, event_type: str = "", scenario: str | None = None
) -> UserHistory | None:
    """Append ``item_id`` with its event type and scenario and keep the newest ``max_len`` items (the lists served
    for the old sequence go).

    Returns:
        The new history, or ``None`` when ``offset`` was already applied (a replay).
    """
    if offset <= history.offset:
        return None
    items = history.items + (item_id,)
    types = history.types + (event_type,)
    scenarios = history.scenarios + (scenario or "",)
    if len(items) > max_len:
        items = items[-max_len:]
    if len(types) > max_len:
        types = types[-max_len:]
    if len(scenarios) > max_len:
        scenarios = scenarios[-max_len:]
    return UserHistory(items, offset, None, types, scenarios)


@dataclass(slots=True)  # built per event: not frozen (see streams.records.Event); never mutated
class Update:
    """A user whose sequence changed, with the newest event that changed it."""

    user_id: str
    items: tuple[str, ...]
    event_ts: float
    record_ts: float
    event_id: str | None
    partition: int = 0  # of the events topic (and of the user's table values)
    offset: int = -1  # of the event: the trigger of the list served for it
    event_type: str = ""
    scenario: str | None = None
    types: tuple[str, ...] = ()  # of the items (the newest ones; see UserHistory)
    scenarios: tuple[str, ...] = ()


def latest_per_user(updates: Iterable[Update]) -> list[Update]:
    """Keep each user's newest update (the last one seen), ordered by that last appearance."""
    newest: dict[str, Update] = {}
    for update in updates:
        newest.pop(update.user_id, None)
        newest[update.user_id] = update
    return list(newest.values())


# Per-partition watermarks live in the sequence table beside the users, under keys that are not valid
# UTF-8 and so can never be a user id (event keys must be the UTF-8 user id).
WATERMARK_PREFIX = b"\xff\x00watermark:"


def watermark_key(partition: int) -> bytes:
    """The table key of the events partition's watermark: the newest offset handled in order there."""
    return WATERMARK_PREFIX + str(partition).encode()


def is_watermark_key(key: bytes) -> bool:
    return key.startswith(WATERMARK_PREFIX)


def watermark_value(offset: int) -> bytes:
    """The table value of a partition's watermark."""
    return _table_value({"offset": offset})


def _table_value(value: Mapping[str, Any]) -> bytes:
    """``value`` as the JSON bytes the table keeps.

    A copy of exactly its length: orjson's own result keeps an ~8 KiB allocation, which a value that lives as long
    as its key would hold on to (786 MiB for 100,000 users of 50 items, against 121 MiB copied).
    """
    return bytes(memoryview(orjson.dumps(value)))


def watermark_of(value: bytes | None) -> int | None:
    """The offset in a watermark value, or None when there is none yet."""
    if not value:
        return None
    return int(orjson.loads(value)["offset"])

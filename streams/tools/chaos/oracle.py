"""The chaos oracle: knows every event it sent and judges the worker's output against them."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from streams.tools.kafka_io import Record


@dataclass(frozen=True)
class Planned:
    """A valid event the oracle sent: whose it is and which item."""

    user_id: str
    item_id: str


@dataclass
class Verdict:
    """What the oracle found; every count but ``events``, ``users`` and ``dead_letters`` should be 0."""

    events: int = 0  # valid events in the events topic
    users: int = 0
    lost: int = 0  # valid events missing from the final sequences
    applied_twice: int = 0  # extra copies of an event in the final sequences
    wrong_sequences: int = 0  # users whose final sequence is not the oracle's
    duplicate_records: int = 0  # recommendation records beyond one per trigger event
    unanswered: int = 0  # users whose last event got no recommendation
    history_in_list: int = 0  # records recommending an item of the user's history at the trigger
    stale_records: int = 0  # records explained by an item that was not in the history at the trigger
    dead_letters: int = 0
    hostile_missed: int = 0  # invalid payloads with no dead letter
    valid_dead_lettered: int = 0  # valid events sent to the dead-letter topic
    bytes_mismatch: int = 0  # dead letters whose bytes (or size and sha256) are not the original's
    metric_mismatch: int = 0  # the worker's dead-letter counter disagrees with the dead-letter topic
    problems: list[str] = field(default_factory=list)

    FAILURES = (
        "lost",
        "applied_twice",
        "wrong_sequences",
        "unanswered",
        "history_in_list",
        "stale_records",
        "hostile_missed",
        "valid_dead_lettered",
        "bytes_mismatch",
        "metric_mismatch",
    )

    @property
    def ok(self) -> bool:
        return not any(getattr(self, name) for name in self.FAILURES)


class Oracle:
    """Plans valid events (distinct items per user, so a repeat means an event applied twice) and judges.

    Args:
        max_len: the worker's STREAMREC_MAX_LEN (sequences keep the newest ``max_len`` items).
    """

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.planned: dict[str, Planned] = {}  # event_id -> what it is
        self._payloads: dict[bytes, str] = {}  # the exact bytes of each valid event -> its event_id

    def plan(self, user_id: str, item_id: str, event_id: str, ts: float, event_type: str = "click") -> bytes:
        """Register a valid event and return its payload."""
        self.planned[event_id] = Planned(user_id, item_id)
        payload = json.dumps(
            {"user_id": user_id, "item_id": item_id, "event_type": event_type, "ts": ts, "event_id": event_id}
        ).encode()
        self._payloads[payload] = event_id
        return payload

    def _valid_id(self, record: Record) -> str | None:
        """The event id of a planned event sent as planned (same bytes, keyed by its user), else None."""
        event_id = self._payloads.get(record.value) if record.value is not None else None
        if event_id is None or record.key != self.planned[event_id].user_id.encode():
            return None
        return event_id

    def judge(
        self,
        events: Iterable[Record],
        sequences: Mapping[str, list[str]],
        recommendations: Iterable[dict],
        dead_letters: Iterable[dict],
    ) -> Verdict:
        """Compare what the worker produced with what it was sent.

        Args:
            events: the events topic as read back (the order the broker stored them in is the truth).
            sequences: user -> final item sequence (the table's changelog, newest value per user).
            recommendations: every record of the recommendations topic.
            dead_letters: every record of the dead-letter topic.
        """
        verdict = Verdict()
        history: dict[str, list[str]] = {}
        at_trigger: dict[str, tuple[str, frozenset[str]]] = {}  # event_id -> (user, history as of it)
        last_event: dict[str, str] = {}
        hostile: dict[tuple[int, int], Record] = {}
        valid_offsets: set[tuple[int, int]] = set()
        for record in sorted(events, key=lambda r: (r.partition, r.offset)):
            event_id = self._valid_id(record)
            if event_id is None:
                hostile[(record.partition, record.offset)] = record
                continue
            planned = self.planned[event_id]
            valid_offsets.add((record.partition, record.offset))
            items = history.setdefault(planned.user_id, [])
            items.append(planned.item_id)
            at_trigger[event_id] = (planned.user_id, frozenset(items[-self.max_len :]))
            last_event[planned.user_id] = event_id
            verdict.events += 1
        verdict.users = len(history)

        for user, items in history.items():
            want, have = items[-self.max_len :], list(sequences.get(user, []))
            if want != have:
                verdict.wrong_sequences += 1
                if len(verdict.problems) < 10:
                    verdict.problems.append(f"{user}: sequence {have[-5:]}... != oracle {want[-5:]}...")
            wanted, got = Counter(want), Counter(have)
            verdict.lost += sum((wanted - got).values())
            verdict.applied_twice += sum((got - wanted).values())

        per_trigger: Counter[str] = Counter()
        answered: set[str] = set()
        for record in recommendations:
            trigger = record.get("trigger_event_id")
            if trigger not in at_trigger:
                continue  # warm-up or foreign records
            per_trigger[trigger] += 1
            answered.add(trigger)
            _, seen = at_trigger[trigger]
            recommended = [item["item_id"] for item in record["items"]]
            if seen.intersection(recommended):
                verdict.history_in_list += 1
            if any(item["because"] is not None and item["because"] not in seen for item in record["items"]):
                verdict.stale_records += 1
        verdict.duplicate_records = sum(count - 1 for count in per_trigger.values())
        verdict.unanswered = sum(1 for event_id in last_event.values() if event_id not in answered)

        lettered: set[tuple[int, int]] = set()
        for letter in dead_letters:
            verdict.dead_letters += 1
            where = (letter["source"]["partition"], letter["source"]["offset"])
            lettered.add(where)
            if where in valid_offsets:
                verdict.valid_dead_lettered += 1
            elif where in hostile and not _same_bytes(letter, hostile[where].value):
                verdict.bytes_mismatch += 1
        verdict.hostile_missed = len(set(hostile) - lettered)
        return verdict


def _same_bytes(letter: Mapping, value: bytes | None) -> bool:
    """True when the dead letter carries ``value``: whole, or cut with the full size and sha256."""
    if value is None:
        return letter.get("value_b64") is None
    kept = base64.b64decode(letter["value_b64"])
    if not letter.get("value_truncated"):
        return kept == value
    return (
        value.startswith(kept)
        and letter.get("value_size") == len(value)
        and letter.get("value_sha256") == hashlib.sha256(value).hexdigest()
    )

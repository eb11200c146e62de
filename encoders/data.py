"""Loaders: our events JSONL, SASRec ``user item`` files and MovieLens-1M raw files."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from serving.behaviour import NO_SCENARIO
from serving.text_rows import item_text
from streams.records import DEFAULT_EVENT_TYPES, DEFAULT_MAX_EVENT_BYTES, InvalidEvent, parse_event

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """An input file is missing, empty or malformed; the message says what to do."""


@dataclass(frozen=True)
class ItemInfo:
    """Catalog metadata of one item (external id)."""

    item_id: str
    title: str = ""
    text: str = ""
    category: str = ""

    @property
    def full_text(self) -> str:
        """Text fed to the text encoder: title, category and description (:func:`serving.text_rows.item_text`)."""
        return item_text(self.title, self.category, self.text)


@dataclass(frozen=True)
class Interactions:
    """Chronological item sequences per user, plus optional item metadata.

    Attributes:
        source: short description of where the data came from (for the manifest).
        user_ids: external user ids, one per sequence.
        sequences: external item ids per user, oldest first.
        items: item metadata by external id; may list items that no user touched.
        behaviour: per user, the ``(event_type, scenario)`` of each event, aligned with ``sequences``
            (scenario ``""`` when the event names none); None when the source has no behaviour (SASRec
            files, MovieLens ratings).
    """

    source: str
    user_ids: tuple[str, ...]
    sequences: tuple[tuple[str, ...], ...]
    items: dict[str, ItemInfo] = field(default_factory=dict)
    behaviour: tuple[tuple[tuple[str, str], ...], ...] | None = None

    @property
    def n_events(self) -> int:
        """Total number of interactions."""
        return sum(len(s) for s in self.sequences)

    def with_items(self, items: dict[str, ItemInfo]) -> Interactions:
        """Returns a copy with the given item metadata."""
        return Interactions(self.source, self.user_ids, self.sequences, items, self.behaviour)

    @property
    def has_behaviour(self) -> bool:
        """True when the events differ in event type or scenario (something for behaviour embeddings to read)."""
        if self.behaviour is None:
            return False
        kinds = {step for steps in self.behaviour for step in steps}
        return len({t for t, _ in kinds}) > 1 or len({s for _, s in kinds}) > 1


def _check_file(path: str | Path, what: str, flag: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} file {p} does not exist; pass an existing file with {flag}.")
    if p.stat().st_size == 0:
        raise DataError(f"{what} file {p} is empty; give {flag} a file with at least one line.")
    return p


def _group(rows: list[tuple], source: str) -> Interactions:
    """Groups ``(user, ts, order, item)`` rows into chronological sequences; rows of
    ``(user, ts, order, item, event_type, scenario)`` give the behaviour too."""
    by_user: dict[str, list[tuple]] = defaultdict(list)
    for user, *rest in rows:
        by_user[user].append(tuple(rest))
    users = sorted(by_user, key=natural_key)
    ordered = [sorted(by_user[u], key=lambda r: (r[0], r[1])) for u in users]
    seqs = tuple(tuple(r[2] for r in steps) for steps in ordered)
    behaviour = None
    if rows and len(rows[0]) == 6:
        behaviour = tuple(tuple((r[3], r[4]) for r in steps) for steps in ordered)
    return Interactions(source, tuple(users), seqs, behaviour=behaviour)


_NUMBERED = re.compile(r"(\D*)(\d+)")


def natural_key(text: str) -> tuple[int, str, int]:
    """Sort key for ids: ``u2`` before ``u10`` and ``7`` before ``12``; other ids after them, as text."""
    match = _NUMBERED.fullmatch(text)
    return (0, match[1], int(match[2])) if match else (1, text, 0)


def _jsonl_records(path: Path, required: tuple[str, ...], what: str) -> Iterator[tuple[int, dict]]:
    """``(line number, record)`` for each non-empty line; DataError for a line that lacks ``required``."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                for key in required:
                    d[key] = str(d[key])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{n}: not {what} ({e}).") from e
            yield n, d


def load_items_jsonl(path: str | Path) -> dict[str, ItemInfo]:
    """Reads an ``items.jsonl`` catalog (``item_id``, ``title``, ``text``, ``category``).

    Later lines for the same ``item_id`` replace earlier ones (like a compacted topic).
    """
    p = _check_file(path, "Items", "--items")
    items: dict[str, ItemInfo] = {}
    for _, d in _jsonl_records(p, ("item_id",), "an item record with an 'item_id'"):
        items[d["item_id"]] = ItemInfo(
            d["item_id"],
            str(d.get("title") or ""),
            str(d.get("text") or ""),
            str(d.get("category") or ""),
        )
    return items


def load_events_jsonl(
    events_path: str | Path,
    items_path: str | Path | None = None,
    event_types: Iterable[str] = DEFAULT_EVENT_TYPES,
) -> Interactions:
    """Reads an ``events`` JSONL log (the topic's contract) into per-user chronological sequences.

    Each line is checked by the worker's own parser (:func:`streams.records.parse_event`): an event the
    worker would dead-letter is skipped here too, and counted by reason in the log.

    Args:
        events_path: one JSON event per line, as produced to the `events` topic.
        items_path: optional ``items.jsonl`` with titles and texts.
        event_types: the accepted event types (the worker's STREAMREC_EVENT_TYPES).

    Returns:
        The interactions; events with a repeated ``event_id`` are counted once, ties in ``ts``
        keep file order.
    """
    p = _check_file(events_path, "Events", "--events")
    types = frozenset(event_types)
    rows: list[tuple[str, float, int, str, str, str]] = []
    seen_ids: set[str] = set()
    refused: Counter[str] = Counter()
    with p.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                event = parse_event(line.rstrip(b"\r\n"), types, DEFAULT_MAX_EVENT_BYTES)
            except InvalidEvent as exc:
                refused[exc.reason] += 1
                if sum(refused.values()) <= 3:
                    logger.warning("%s:%d skipped, as the worker would: %s", p, n, exc)
                continue
            if event.event_id is not None:
                if event.event_id in seen_ids:
                    continue
                seen_ids.add(event.event_id)
            rows.append((event.user_id, event.ts, n, event.item_id, event.event_type, event.scenario or NO_SCENARIO))
    if refused:
        logger.warning(
            "%s: skipped %d events the worker would dead-letter (%s)",
            p,
            sum(refused.values()),
            ", ".join(f"{count} {reason}" for reason, count in refused.most_common()),
        )
    if not rows:
        raise DataError(f"Events file {p} has no valid events (see the events contract in README.md); check --events.")
    data = _group(rows, f"events:{p.name}")
    if items_path is not None:
        data = data.with_items(load_items_jsonl(items_path))
    return data


def load_sasrec(
    path: str | Path,
    items_map: str | Path | None = None,
    movies: str | Path | None = None,
) -> Interactions:
    """Reads a SASRec-format file: ``user item`` per line, each user's items chronological.

    Args:
        path: the ``user item`` file (e.g. SASRec's ``ml-1m.txt``).
        items_map: optional ``SAS_ID ORIGINAL_ID`` file mapping item ids to MovieLens ids.
        movies: optional MovieLens ``movies.dat`` (needs ``items_map``) for titles and genres.
    """
    p = _check_file(path, "SASRec", "--sasrec")
    rows: list[tuple[str, float, int, str]] = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DataError(f"{p}:{n}: expected 'user item', got {line.strip()!r}.")
            rows.append((parts[0], float(n), n, parts[1]))
    if not rows:
        raise DataError(f"SASRec file {p} has no 'user item' lines; check --sasrec.")
    data = _group(rows, f"sasrec:{p.name}")
    if movies is not None:
        if items_map is None:
            raise DataError("--movies with --sasrec needs --sasrec-items-map to map item ids.")
        titles = load_movies(movies)
        m = _check_file(items_map, "Item map", "--sasrec-items-map")
        items = {}
        for line in m.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1] in titles:
                info = titles[parts[1]]
                items[parts[0]] = ItemInfo(parts[0], info.title, info.text, info.category)
        data = data.with_items(items)
    return data


def load_movies(path: str | Path) -> dict[str, ItemInfo]:
    """Reads MovieLens ``movies.dat`` (latin-1, ``MovieID::Title::Genres``), keyed by MovieID."""
    p = _check_file(path, "Movies", "--movies")
    items = {}
    for line in p.read_text(encoding="latin-1").splitlines():
        parts = line.split("::")
        if len(parts) != 3:
            continue
        movie_id, title, genres = parts
        items[movie_id] = ItemInfo(movie_id, title, "", genres.replace("|", ", "))
    return items


def load_movielens_ratings(ratings: str | Path, movies: str | Path | None = None) -> Interactions:
    """Reads MovieLens-1M ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``).

    Every rating counts as an interaction; each user's items are sorted by timestamp (ties keep
    file order).
    """
    p = _check_file(ratings, "Ratings", "--ratings")
    rows: list[tuple[str, float, int, str]] = []
    with p.open(encoding="latin-1") as f:
        for n, line in enumerate(f, 1):
            parts = line.strip().split("::")
            if len(parts) < 4:
                if line.strip():
                    raise DataError(f"{p}:{n}: expected UserID::MovieID::Rating::Timestamp.")
                continue
            rows.append((parts[0], float(parts[3]), n, parts[1]))
    if not rows:
        raise DataError(f"Ratings file {p} has no ratings; check --ratings.")
    data = _group(rows, f"movielens:{p.name}")
    if movies is not None:
        data = data.with_items(load_movies(movies))
    return data

"""Loaders for every input format, and their error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from encoders.data import (
    DataError,
    load_events_jsonl,
    load_movielens_ratings,
    load_movies,
    load_sasrec,
)
from encoders.pipeline import DataSource
from encoders.vocab import Vocabulary

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_events_jsonl_sorts_by_ts_dedups_event_ids_and_reads_items(tmp_path):
    events = _write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"user_id": "u2", "item_id": "i9", "event_type": "view", "ts": 30.0, "event_id": "a"},
            {"user_id": "u1", "item_id": "i5", "event_type": "click", "ts": 20.0, "event_id": "b"},
            {"user_id": "u1", "item_id": "i3", "event_type": "click", "ts": "1970-01-01T00:00:10Z", "event_id": "c"},
            {"user_id": "u1", "item_id": "i5", "event_type": "click", "ts": 20.0, "event_id": "b"},
            {"user_id": "u1", "item_id": "i7", "event_type": "purchase", "ts": 25, "event_id": "d"},
        ],
    )
    items = _write_jsonl(
        tmp_path / "items.jsonl",
        [
            {"item_id": "i3", "title": "old title", "text": "", "category": "x"},
            {"item_id": "i3", "title": "blue mug", "text": "a mug", "category": "kitchen"},
            {"item_id": "i100", "title": "catalog only", "text": "", "category": "x"},
        ],
    )
    data = load_events_jsonl(events, items)
    assert data.user_ids == ("u1", "u2")
    assert data.sequences == (("i3", "i5", "i7"), ("i9",))
    assert data.n_events == 4
    assert data.items["i3"].title == "blue mug"  # later line wins (compacted topic)
    assert data.items["i3"].full_text == "blue mug. kitchen. a mug"

    vocab = Vocabulary.build(data, include_catalog_only=False)
    assert vocab.item_ids == ("i3", "i5", "i7", "i9")
    assert vocab.encode("i3") == 2 and vocab.encode("nope") == 1
    with_cold = Vocabulary.build(data, include_catalog_only=True)
    assert with_cold.item_ids[-1] == "i100" and with_cold.n_rows == 7


def test_event_type_filter(tmp_path):
    events = _write_jsonl(
        tmp_path / "e.jsonl",
        [
            {"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": 1},
            {"user_id": "u1", "item_id": "i2", "event_type": "purchase", "ts": 2},
        ],
    )
    data = load_events_jsonl(events, event_types=frozenset({"purchase"}))
    assert data.sequences == (("i2",),)


def test_sasrec_format_keeps_file_order(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("1 10\n1 3\n2 7\n1 5\n2 10\n", encoding="utf-8")
    data = load_sasrec(path)
    assert data.user_ids == ("1", "2")
    assert data.sequences == (("10", "3", "5"), ("7", "10"))


def test_movielens_ratings_sorted_by_timestamp_with_latin1_titles(tmp_path):
    ratings = tmp_path / "ratings.dat"
    ratings.write_text("1::20::5::300\n1::10::3::100\n2::10::4::50\n1::30::4::200\n", encoding="latin-1")
    movies = tmp_path / "movies.dat"
    movies.write_bytes("10::Am\xe9lie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n".encode("latin-1"))
    data = load_movielens_ratings(ratings, movies)
    assert data.sequences[0] == ("10", "30", "20")
    assert data.items["10"].title == "Am\u00e9lie (2001)"
    assert data.items["10"].category == "Comedy, Romance"


def test_sasrec_with_id_map_and_movies(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("1 1\n1 2\n", encoding="utf-8")
    mapping = tmp_path / "map.txt"
    mapping.write_text("1 20\n2 10\n", encoding="utf-8")
    movies = tmp_path / "movies.dat"
    movies.write_bytes(b"10::Heat (1995)::Action\n20::Toy Story (1995)::Animation\n")
    data = load_sasrec(path, mapping, movies)
    assert data.items["1"].title == "Toy Story (1995)"
    assert data.items["2"].title == "Heat (1995)"


@pytest.mark.parametrize("content", [None, ""])
def test_missing_or_empty_files_say_what_to_do(tmp_path, content):
    path = tmp_path / "events.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match="--events"):
        load_events_jsonl(path)
    with pytest.raises(DataError, match="exactly one"):
        DataSource().load()


def test_a_file_without_valid_events_is_refused_with_the_reasons(tmp_path, caplog):
    path = tmp_path / "events.jsonl"
    path.write_text('{"user_id": "u1", "item_id": "i1", "ts": 1}\nnot json\n')
    with pytest.raises(DataError, match="no valid events"):
        load_events_jsonl(path)
    assert ":1 skipped" in caplog.text and "missing_field" in caplog.text and "1 not_json" in caplog.text


def test_shared_movielens_sasrec_file_with_titles():
    sas = SHARED_DATA / "sasrec"
    data = load_sasrec(
        sas / "ml-1m.txt", sas / "ml1m-sas-mapping" / "sas_to_original_items.txt", SHARED_DATA / "ml-1m" / "movies.dat"
    )
    assert len(data.user_ids) == 6040
    assert data.n_events == 999_611
    assert len({i for s in data.sequences for i in s}) == 3416
    assert len(data.items) == 3416 and all(i.title for i in data.items.values())
    assert len(load_movies(SHARED_DATA / "ml-1m" / "movies.dat")) == 3883

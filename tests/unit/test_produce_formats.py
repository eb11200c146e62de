"""`streamrec produce` reads JSONL events, SASRec `user item` files and MovieLens ratings.dat."""

import json

import pytest

from streams.tools.produce import count_lines, detect_format, read_events


def test_jsonl_is_passed_through(tmp_path):
    path = tmp_path / "events.jsonl"
    rows = [
        {"user_id": "u1", "item_id": "i1", "event_type": "click", "ts": 5.0},
        {"user_id": "u2", "item_id": "i9", "event_type": "view", "ts": 6.0},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert detect_format(path) == "jsonl"
    assert list(read_events(path)) == rows
    assert count_lines(path) == 2


def test_sasrec_lines_become_click_events_in_file_order(tmp_path):
    path = tmp_path / "ml-1m.txt"
    path.write_text("1 10\n1 11\n2 10\n")
    assert detect_format(path) == "sasrec"
    events = list(read_events(path))
    assert [(e["user_id"], e["item_id"]) for e in events] == [("1", "10"), ("1", "11"), ("2", "10")]
    assert all(e["event_type"] == "click" for e in events)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)


def test_movielens_ratings_keep_their_timestamps(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_bytes("1::1193::5::978300760\n1::661::3::978302109\n".encode("latin-1"))
    assert detect_format(path) == "ratings"
    events = list(read_events(path))
    assert events[0] == {"user_id": "1", "item_id": "1193", "event_type": "click", "ts": 978300760.0}


def test_missing_and_unknown_files_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="streamrec simulate"):
        list(read_events(tmp_path / "nope.jsonl"))
    odd = tmp_path / "odd.txt"
    odd.write_text("a b c d\n")
    with pytest.raises(ValueError, match="--format"):
        detect_format(odd)

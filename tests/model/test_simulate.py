"""The synthetic event log: contract fields, determinism, sequential structure."""

from __future__ import annotations

import json
from collections import defaultdict

from streams.tools.simulate import EVENT_TYPES, simulate, write_dataset


def test_events_follow_the_contract_and_are_deterministic(tmp_path):
    events, items = simulate(n_users=30, n_items=50, events_per_user=(5, 12), seed=11)
    again = simulate(n_users=30, n_items=50, events_per_user=(5, 12), seed=11)
    other = simulate(n_users=30, n_items=50, events_per_user=(5, 12), seed=12)
    assert (events, items) == again
    assert events != other[0]
    assert len({e["event_id"] for e in events}) == len(events)
    item_ids = {i["item_id"] for i in items}
    assert len(item_ids) == 50
    per_user = defaultdict(list)
    for e in events:
        assert set(e) == {"user_id", "item_id", "event_type", "ts", "event_id"}
        assert e["event_type"] in EVENT_TYPES and e["item_id"] in item_ids
        per_user[e["user_id"]].append(e)
    assert len(per_user) == 30
    for evs in per_user.values():
        ts = [e["ts"] for e in evs]
        assert ts == sorted(ts) and len(set(ts)) == len(ts)
        assert 5 <= len(evs) <= 12
    for i in items:
        assert set(i) == {"item_id", "title", "text", "category", "available"}
        assert i["title"] and i["category"] in i["text"] and i["available"] is True

    events_path, items_path = write_dataset(tmp_path, events, items)
    lines = events_path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == events
    assert len(items_path.read_text(encoding="utf-8").splitlines()) == 50


def test_next_item_is_predictable_from_the_last_one():
    """Most transitions repeat (same item -> same next item across users): learnable."""
    events, _ = simulate(n_users=400, n_items=60, events_per_user=20, seed=5)
    per_user = defaultdict(list)
    for e in events:
        per_user[e["user_id"]].append(e["item_id"])
    follow = defaultdict(lambda: defaultdict(int))
    for seq in per_user.values():
        for a, b in zip(seq, seq[1:]):
            follow[a][b] += 1
    top3 = sum(sum(sorted(c.values())[-3:]) for c in follow.values())
    total = sum(sum(c.values()) for c in follow.values())
    assert top3 / total > 0.5  # uniform next items over 60 would give ~0.05

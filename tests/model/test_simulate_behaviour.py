"""The multi-scenario simulator: contracts, determinism, and the signal only event types carry."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from streams.items import parse_item
from streams.records import DEFAULT_EVENT_TYPES, DEFAULT_MAX_EVENT_BYTES, parse_event
from streams.tools.cli import main
from streams.tools.simulate_behaviour import SCENARIOS, complements, simulate_behaviour


def _by_user(events: list[dict]) -> dict[str, list[dict]]:
    per_user = defaultdict(list)
    for e in events:
        per_user[e["user_id"]].append(e)
    return per_user


def test_events_and_items_follow_the_contracts_and_are_deterministic():
    events, items = simulate_behaviour(n_users=60, n_items=120, events_per_user=(5, 15), seed=11)
    assert (events, items) == simulate_behaviour(n_users=60, n_items=120, events_per_user=(5, 15), seed=11)
    assert events != simulate_behaviour(n_users=60, n_items=120, events_per_user=(5, 15), seed=12)[0]
    scenario_of = {}
    for i in items:
        raw = json.dumps(i).encode()
        assert parse_item(raw, i["item_id"].encode()).scenario == i["scenario"]
        assert set(i) == {"item_id", "title", "text", "category", "scenario", "available"}
        assert i["title"] and i["category"] in i["text"] and i["available"] is True
        scenario_of[i["item_id"]] = i["scenario"]
    assert len(scenario_of) == 120 and set(scenario_of.values()) == set(SCENARIOS)
    assert len({e["event_id"] for e in events}) == len(events)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    for e in events:
        event = parse_event(json.dumps(e).encode(), DEFAULT_EVENT_TYPES, DEFAULT_MAX_EVENT_BYTES)
        assert event.scenario == e["scenario"] == scenario_of[e["item_id"]]
    per_user = _by_user(events)
    assert len(per_user) == 60
    for evs in per_user.values():
        ts = [e["ts"] for e in evs]
        assert len(set(ts)) == len(ts) and 5 <= len(evs) <= 15
        assert len({e["item_id"] for e in evs}) == len(evs)  # never the same item twice


def test_a_tiny_catalog_has_fewer_scenarios():
    _, items = simulate_behaviour(n_users=5, n_items=10, events_per_user=20, seed=0)
    assert {i["scenario"] for i in items} == {"shop"} and len({i["category"] for i in items}) >= 2
    _, items = simulate_behaviour(n_users=5, n_items=30, events_per_user=20, seed=0)
    assert {i["scenario"] for i in items} == {"shop", "video"}


def test_the_event_type_says_where_a_shop_search_goes_next():
    """After a view the next item stays in the category; after a purchase it moves to the complement."""
    events, items = simulate_behaviour(n_users=600, n_items=300, events_per_user=30, seed=3)
    category = {i["item_id"]: i["category"] for i in items}
    complement = complements({i["category"] for i in items if i["scenario"] == "shop"})
    assert all(a != b for a, b in complement.items())
    pairs, same, to_complement = Counter(), Counter(), Counter()
    for evs in _by_user(events).values():
        for a, b in zip(evs, evs[1:]):
            if a["scenario"] == b["scenario"] == "shop":
                now, nxt = category[a["item_id"]], category[b["item_id"]]
                pairs[a["event_type"]] += 1
                same[a["event_type"]] += nxt == now
                to_complement[a["event_type"]] += nxt == complement[now]
    assert pairs["purchase"] > 300 and pairs["view"] > 3000
    assert to_complement["purchase"] / pairs["purchase"] > 0.7  # measured ~0.85
    assert same["purchase"] / pairs["purchase"] < 0.15
    assert same["view"] / pairs["view"] > 0.8  # measured ~0.9
    assert to_complement["view"] / pairs["view"] < 0.05


def test_users_are_shared_across_scenarios():
    events, _ = simulate_behaviour(n_users=300, n_items=300, events_per_user=30, seed=5)
    spread = Counter(len({e["scenario"] for e in evs}) for evs in _by_user(events).values())
    assert spread[2] + spread[3] > 0.8 * 300
    assert Counter(e["scenario"] for e in events).most_common(1)[0][0] == "shop"


def test_cli_writes_the_behaviour_data_set(tmp_path):
    assert main(["simulate", "--behaviour", "--out", str(tmp_path), "--users", "20", "--items", "60"]) == 0
    lines = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 20 * 40 and all("scenario" in json.loads(line) for line in lines)

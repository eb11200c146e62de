"""Pure helpers of the demo."""

from streams.tools.demo import hold_back


def test_hold_back_keeps_each_users_newest_events_in_time_order():
    events = [{"user_id": u, "item_id": f"{u}-{n}", "ts": float(n * 10 + ord(u))} for u in "ab" for n in range(5)]
    history, replay = hold_back(events, 4)
    assert [e["item_id"] for e in replay] == ["a-3", "b-3", "a-4", "b-4"]
    assert len(history) + len(replay) == len(events)
    assert {e["item_id"] for e in history} == {f"{u}-{n}" for u in "ab" for n in range(3)}


def test_hold_back_leaves_every_user_some_history():
    events = [{"user_id": "solo", "item_id": "x", "ts": 1.0}, {"user_id": "solo", "item_id": "y", "ts": 2.0}]
    history, replay = hold_back(events, 100)
    assert [e["item_id"] for e in history] == ["x"] and [e["item_id"] for e in replay] == ["y"]

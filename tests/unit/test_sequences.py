"""Pure sequence updates and batch de-duplication."""

from streams.sequences import Update, UserHistory, apply_event, latest_per_user


def test_append_keeps_newest_max_len():
    history = UserHistory()
    for offset, item in enumerate(["a", "b", "c", "d"]):
        history = apply_event(history, item, offset, max_len=3)
    assert history.items == ("b", "c", "d")
    assert history.offset == 3


def test_replayed_offsets_are_not_applied_twice():
    history = apply_event(UserHistory(), "a", 5, max_len=10)
    assert apply_event(history, "a", 5, max_len=10) is None
    assert apply_event(history, "b", 4, max_len=10) is None
    assert apply_event(history, "b", 6, max_len=10).items == ("a", "b")


def test_history_is_immutable_and_round_trips_json():
    history = apply_event(UserHistory(), "x", 1, max_len=5)
    again = UserHistory.from_json(history.to_json())
    assert again == history
    assert UserHistory.from_json(None) == UserHistory()
    newer = apply_event(history, "y", 2, max_len=5)
    assert history.items == ("x",) and newer.items == ("x", "y")


def test_latest_per_user_keeps_the_newest_update():
    updates = [
        Update("u1", ("a",), 1.0, 1.0, "e1"),
        Update("u2", ("b",), 2.0, 2.0, "e2"),
        Update("u1", ("a", "c"), 3.0, 3.0, "e3"),
    ]
    latest = latest_per_user(updates)
    assert [u.user_id for u in latest] == ["u2", "u1"]
    assert latest[1].items == ("a", "c") and latest[1].event_id == "e3"

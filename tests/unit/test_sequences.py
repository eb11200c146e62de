"""Pure sequence updates and batch de-duplication."""

from streams.sequences import Update, UserHistory, apply_event, latest_per_user, watermark_of, watermark_value


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


def test_each_item_keeps_its_event_type_and_scenario_aligned_to_the_newest_max_len():
    h = UserHistory()
    for offset, (item, kind, scenario) in enumerate(
        [("a", "view", "shop"), ("b", "purchase", None), ("c", "click", "news"), ("d", "view", "shop")]
    ):
        h = apply_event(h, item, offset, max_len=3, event_type=kind, scenario=scenario)
    assert h.items == ("b", "c", "d")
    assert h.types == ("purchase", "click", "view")
    assert h.scenarios == ("", "news", "shop")  # an event without a scenario keeps ""
    assert UserHistory.from_json(h.to_json()) == h


def test_a_value_of_the_older_shape_is_read_and_its_old_items_stay_without_behaviour():
    old = UserHistory.from_json({"items": ["x", "y"], "offset": 7})  # written before sequences kept behaviour
    assert (old.items, old.offset, old.types, old.scenarios) == (("x", "y"), 7, (), ())
    new = apply_event(old, "z", 8, max_len=3, event_type="purchase", scenario="shop")
    assert new.items == ("x", "y", "z") and new.types == ("purchase",) and new.scenarios == ("shop",)
    # once the old items have left the window, every kept item has its behaviour again
    newer = apply_event(apply_event(apply_event(new, "p", 9, 3, "view"), "q", 10, 3, "view"), "r", 11, 3, "view")
    assert len(newer.types) == len(newer.items) == 3


def test_table_values_are_json_bytes_and_read_what_faust_wrote_before():
    history = UserHistory(("a", "b"), 7, {"o": 7, "live": ["v1", ["c"]]}, ("view", "purchase"), ("shop", ""))
    raw = history.to_bytes()
    assert isinstance(raw, bytes) and UserHistory.from_bytes(raw) == history
    assert UserHistory.from_bytes(None) == UserHistory()
    # values (and changelog records) written while the table used faust's own JSON serializer
    from faust.serializers import codecs

    assert UserHistory.from_bytes(codecs.dumps("json", history.to_json())) == history
    assert watermark_of(codecs.dumps("json", {"offset": 12})) == 12
    assert watermark_of(watermark_value(12)) == 12 and watermark_of(None) is None


def test_a_stored_value_holds_no_more_memory_than_its_length():
    import tracemalloc

    history = UserHistory(tuple(f"item-{k}" for k in range(50)), 1, None, ("view",) * 50, ("shop",) * 50)
    tracemalloc.start()
    try:
        values = [history.to_bytes() for _ in range(200)]
        held = tracemalloc.get_traced_memory()[0] / len(values)
    finally:
        tracemalloc.stop()
    assert held < 2 * len(values[0]), f"{held:.0f} bytes held per {len(values[0])}-byte value"

"""The stall watchdog on a fake clock."""

from streams.watchdog import Watchdog

TP = ("events", 0)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make(broker=True):
    clock = Clock()
    answers = {"up": broker, "asked": 0}

    def broker_answers():
        answers["asked"] += 1
        return answers["up"]

    return Watchdog(10.0, broker_answers, clock), clock, answers


def test_lag_without_progress_is_a_stall():
    dog, clock, _ = make()
    dog.beat({TP: (5, 100)}, busy=False)
    clock.now = 9
    dog.beat({TP: (5, 100)}, busy=False)
    assert dog.stalled() is None
    clock.now = 11
    dog.beat({TP: (5, 100)}, busy=False)
    assert "events[0]" in dog.stalled()


def test_progress_no_lag_and_rebalances_are_not_stalls():
    dog, clock, _ = make()
    for second, (offset, lag, busy) in enumerate([(5, 100, False), (6, 99, False), (6, 0, False), (6, 50, True)]):
        clock.now = second * 8
        dog.beat({TP: (offset, lag)}, busy=busy)
        assert dog.stalled() is None


def test_a_broker_outage_is_not_a_stall():
    dog, clock, answers = make(broker=False)
    dog.beat({TP: (5, 100)}, busy=False)
    clock.now = 11
    dog.beat({TP: (5, 100)}, busy=False)
    assert dog.stalled() is None and answers["asked"] == 1
    answers["up"] = True
    clock.now = 15  # the outage reset the clock at 11
    dog.beat({TP: (5, 100)}, busy=False)
    assert dog.stalled() is None
    clock.now = 22
    dog.beat({TP: (5, 100)}, busy=False)
    assert dog.stalled() is not None


def test_a_silent_event_loop_is_a_stall():
    dog, clock, _ = make()
    assert dog.stalled() is None  # never started
    dog.beat({}, busy=False)
    clock.now = 11
    assert "event loop" in dog.stalled()


def test_watch_reports_once_from_its_thread():
    import threading

    dog, clock, _ = make()
    dog.beat({}, busy=False)
    clock.now = 100
    reasons = []
    done = threading.Event()
    dog.watch(lambda reason: (reasons.append(reason), done.set()), interval=0.01)
    assert done.wait(5) and len(reasons) == 1


def test_a_partition_never_fetched_from_is_a_stall_only_when_the_broker_says_events_wait_there():
    clock = Clock()
    waiting = {"tps": set(), "asked": []}

    def events_waiting(tps):
        waiting["asked"].append(list(tps))
        return waiting["tps"] & set(tps)

    dog = Watchdog(10.0, lambda: True, clock, events_waiting=events_waiting)
    dog.beat({TP: (None, None)}, busy=False)  # assigned, nothing fetched: its lag is unknown
    clock.now = 11
    dog.beat({TP: (None, None)}, busy=False)
    assert dog.stalled() is None and waiting["asked"] == [[TP]]  # nothing waits there: an idle partition
    clock.now = 15
    assert dog.stalled() is None and len(waiting["asked"]) == 1  # not asked again before another timeout
    waiting["tps"] = {TP}  # events arrive, and the consumer still never fetches them
    clock.now = 22
    dog.beat({TP: (None, None)}, busy=False)
    assert "events[0]" in dog.stalled()


def test_a_never_fetched_partition_is_not_checked_without_a_way_to_ask():
    clock = Clock()
    dog = Watchdog(10.0, lambda: True, clock)
    dog.beat({TP: (None, None)}, busy=False)
    clock.now = 11
    dog.beat({TP: (None, None)}, busy=False)
    assert dog.stalled() is None


def test_a_failed_question_to_the_broker_is_not_a_stall():
    clock = Clock()

    def events_waiting(tps):
        raise ConnectionError("broker went away")

    dog = Watchdog(10.0, lambda: True, clock, events_waiting=events_waiting)
    dog.beat({TP: (None, None)}, busy=False)
    clock.now = 11
    dog.beat({TP: (None, None)}, busy=False)
    assert dog.stalled() is None

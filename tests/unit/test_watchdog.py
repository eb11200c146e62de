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

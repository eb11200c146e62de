"""RecoveryWatch: a recovery that stopped receiving its changelog is sought back to the first record it needs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from streams.recovery_watch import RecoveryWatch

CHANGELOG = TP("app-user_sequences-changelog", 1)
OTHER = TP("app-user_sequences-changelog", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(offsets, highwaters, in_recovery=True):
    recovery = SimpleNamespace(in_recovery=in_recovery, active_offsets=dict(offsets), active_highwaters=highwaters)
    seeks: list[tuple[TP, int]] = []
    nudged: list[TP] = []

    async def seek(tp, offset):
        seeks.append((tp, offset))

    clock = Clock()
    watch = RecoveryWatch(recovery, seek, patience=10.0, on_nudge=nudged.append, clock=clock)
    return watch, recovery, clock, seeks, nudged


def check(watch):
    asyncio.run(watch.check())


def test_a_stuck_recovery_is_sought_back_to_the_record_after_its_last_applied():
    watch, recovery, clock, seeks, nudged = make({CHANGELOG: 41, OTHER: 97}, {CHANGELOG: 97, OTHER: 97})
    check(watch)
    clock.now += 9.9
    check(watch)
    assert seeks == []  # not yet: patience
    clock.now += 0.2
    check(watch)
    assert seeks == [(CHANGELOG, 42)] and nudged == [CHANGELOG]  # the finished partition is left alone
    clock.now += 5
    check(watch)
    assert len(seeks) == 1  # patience again before the next seek
    clock.now += 5
    check(watch)
    assert seeks[-1] == (CHANGELOG, 42) and len(seeks) == 2


def test_a_recovery_that_has_read_nothing_starts_again_at_the_beginning():
    watch, _, clock, seeks, _ = make({CHANGELOG: -1}, {CHANGELOG: 97})
    check(watch)
    clock.now += 11
    check(watch)
    assert seeks == [(CHANGELOG, 0)]


def test_progress_resets_the_patience_and_an_empty_changelog_needs_nothing():
    watch, recovery, clock, seeks, _ = make({CHANGELOG: 10, OTHER: -1}, {CHANGELOG: 97, OTHER: -1})
    check(watch)
    for offset in (20, 30, 40):
        clock.now += 8
        recovery.active_offsets[CHANGELOG] = offset
        check(watch)
    assert seeks == []


def test_nothing_is_sought_outside_a_recovery_and_a_new_recovery_starts_its_own_patience():
    watch, recovery, clock, seeks, _ = make({CHANGELOG: 5}, {CHANGELOG: 97}, in_recovery=False)
    check(watch)
    clock.now += 60
    check(watch)
    assert seeks == []
    recovery.in_recovery = True
    check(watch)
    clock.now += 5
    check(watch)
    assert seeks == []


def test_a_seek_that_fails_is_logged_and_tried_again_after_the_patience(caplog):
    recovery = SimpleNamespace(in_recovery=True, active_offsets={CHANGELOG: 3}, active_highwaters={CHANGELOG: 9})
    tries: list[int] = []

    async def seek(tp, offset):
        tries.append(offset)
        raise RuntimeError(f"{tp} is not assigned")

    clock = Clock()
    nudged: list[TP] = []
    watch = RecoveryWatch(recovery, seek, patience=10.0, on_nudge=nudged.append, clock=clock)
    for _ in range(3):
        check(watch)
        clock.now += 10.5
    check(watch)
    assert tries == [4, 4, 4] and nudged == []
    assert "could not seek" in caplog.text

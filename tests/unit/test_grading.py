"""Online grading on hand-made cases: a hit at rank 1 and 3, a miss, a repeat of a seen item; when served lists are
due for the table."""

import math

import pytest

from streams.grading import KS, ServedLists, grade

SERVED = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]


def test_a_hit_at_rank_one():
    g = grade("a", SERVED, seen={"x"})
    assert g.rank == 0 and g.reciprocal_rank == 1.0
    assert [g.hit(k) for k in KS] == [1.0, 1.0, 1.0] and [g.ndcg(k) for k in KS] == [1.0, 1.0, 1.0]


def test_a_hit_at_rank_three():
    g = grade("c", SERVED, seen=set())
    assert g.rank == 2 and g.reciprocal_rank == pytest.approx(1 / 3)
    assert [g.hit(k) for k in KS] == [0.0, 1.0, 1.0]
    assert [g.ndcg(k) for k in KS] == [0.0, pytest.approx(1 / math.log2(4)), pytest.approx(0.5)]


def test_a_miss():
    g = grade("zzz", SERVED, seen=set())
    assert g.rank is None and g.reciprocal_rank == 0.0 and [g.hit(k) for k in KS] == [0.0, 0.0, 0.0]


def test_a_repeat_of_a_seen_item_is_a_miss_even_if_listed():
    g = grade("b", SERVED, seen={"b"})  # the list cannot hold it under seen-item masking; graded like offline
    assert g.rank is None and g.ndcg(10) == 0.0


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_served_lists_are_due_after_the_delay_and_a_newer_list_replaces_an_older_one():
    clock = Clock()
    lists = ServedLists(delay=5.0, clock=clock)
    first = {"o": 1, "live": ["v1", ["i1"]]}
    lists.put(0, {b"u1": first, b"u2": {"o": 2, "live": ["v1", ["i2"]]}})
    clock.now += 3
    newer = {"o": 7, "live": ["v1", ["i3"]]}
    lists.put(0, {b"u1": newer})  # u1 served again: the older list is obsolete
    lists.put(1, {b"u3": {"o": 4, "live": ["v1", ["i4"]]}})
    assert lists.take(0) == {}  # nothing is 5 s old yet
    assert lists.get(0, b"u1") is newer and lists.get(0, b"u2")["o"] == 2  # graded from memory meanwhile
    clock.now += 2.5
    assert lists.take(0) == {b"u2": {"o": 2, "live": ["v1", ["i2"]]}}  # u1's first list is not written
    assert lists.get(0, b"u2") is None and lists.get(0, b"u1") is newer and len(lists) == 2
    clock.now += 3
    assert lists.take(0) == {b"u1": newer} and lists.take(0) == {}
    lists.drop({1})
    assert len(lists) == 0 and lists.take(1) == {}


def test_served_lists_without_a_delay_are_due_at_once():
    lists = ServedLists()
    lists.put(2, {b"u1": {"o": 1}})
    assert lists.take(2) == {b"u1": {"o": 1}} and len(lists) == 0

"""Online grading on hand-made cases: a hit at rank 1 and 3, a miss, and a repeat of a seen item."""

import math

import pytest

from streams.grading import KS, grade

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

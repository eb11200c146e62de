"""The promotion gate's statistics: the sign test, the paired evidence from grade records, the verdict."""

import math

import pytest

from streams.tools.promote import Evidence, ndcg_at_k, paired_evidence, sign_test_p


def grade(offset, live_rank, shadow_rank, live="A", shadow="B", partition=0):
    return {
        "partition": partition,
        "offset": offset,
        "event_type": "click",
        "live": live,
        "live_rank": live_rank,
        "shadow": shadow,
        "shadow_rank": shadow_rank,
    }


def test_the_sign_test_is_the_exact_binomial_tail():
    assert sign_test_p(9, 1) == pytest.approx(11 / 1024)
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(5, 5) == pytest.approx(sum(math.comb(10, k) for k in range(5, 11)) / 1024)
    # the normal approximation for large n agrees with the exact tail where both apply
    assert sign_test_p(2600, 2401) == pytest.approx(0.0025, abs=0.001)


def test_paired_evidence_counts_each_event_once_and_only_for_the_two_versions():
    grades = [grade(n, 0, None) for n in range(30)]  # the live model hits at rank 1, the shadow misses
    grades += [grade(n, 0, None) for n in range(10)]  # replays of the same events
    grades += [grade(n, None, 0, live="A", shadow="C") for n in range(50)]  # another shadow version
    evidence = paired_evidence(grades, "A", "B")
    assert evidence.events == 30
    assert evidence.live_ndcg10 == 1.0 and evidence.shadow_ndcg10 == 0.0
    assert (evidence.shadow_better, evidence.live_better) == (0, 30)
    assert evidence.diff_high == pytest.approx(-1.0)
    assert evidence.verdict(10, 0.05) == (False, "worse: the shadow's online NDCG@10 is not above the live model's")


def test_a_clearly_better_shadow_is_promoted_and_a_small_sample_is_not():
    grades = [grade(n, None if n % 3 else 4, 0 if n % 2 else 9) for n in range(400)]
    evidence = paired_evidence(grades, "A", "B")
    assert evidence.shadow_ndcg10 > evidence.live_ndcg10
    assert evidence.sign_p < 1e-6 and evidence.diff_low > 0
    assert evidence.verdict(100, 0.05)[0] is True
    promote, reason = evidence.verdict(1000, 0.05)
    assert promote is False and reason.startswith("inconclusive: 400 paired events")


def test_a_coin_flip_shadow_is_inconclusive():
    grades = [grade(n, 0 if n % 2 else 1, 1 if n % 2 else 0) for n in range(1001)]  # one more shadow win
    evidence = paired_evidence(grades, "A", "B")
    assert evidence.shadow_ndcg10 > evidence.live_ndcg10
    promote, reason = evidence.verdict(100, 0.05)
    assert promote is False and "inconclusive" in reason


def test_ndcg_of_a_rank():
    assert ndcg_at_k(0) == 1.0 and ndcg_at_k(2) == pytest.approx(0.5) and ndcg_at_k(10) == 0 and ndcg_at_k(None) == 0


def test_no_grades_is_inconclusive():
    evidence = paired_evidence([], "A", "B")
    assert evidence == Evidence("A", "B", 0, 0.0, 0.0, 0, 0, 1.0, 0.0, 0.0)
    assert evidence.verdict(1, 0.05)[0] is False

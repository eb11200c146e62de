"""Ranking metrics, seen-item exclusion, tie handling and the baselines."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.baselines import CoOccurrence, Popularity
from encoders.evaluate import evaluate_scorer, metrics_from_ranks, target_ranks
from encoders.split import EvalSet, leave_last_out, left_pad


def test_metrics_from_known_ranks():
    m = metrics_from_ranks(np.array([0, 1, 9, 10, np.inf]))
    assert m["recall@10"] == pytest.approx(3 / 5)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11) / 5)


def test_target_ranks_exclude_seen_pad_unknown_and_count_ties_against_target():
    scores = np.array([[9.0, 9.0, 5.0, 4.0, 3.0, 3.0]])  # rows 0/1 are pad/unknown
    assert target_ranks(scores, np.array([3]), [np.array([2])]).tolist() == [0]  # 5.0 seen
    assert target_ranks(scores, np.array([3]), [np.array([4])]).tolist() == [1]
    assert target_ranks(scores, np.array([4]), [np.array([2])]).tolist() == [2]  # tie: pessimistic
    assert target_ranks(scores, np.array([4]), [np.array([4])]).tolist() == [np.inf]  # seen target


def test_leave_last_out_and_left_pad():
    seqs = [np.array([2, 3, 4, 5]), np.array([6, 7])]
    split = leave_last_out(seqs)
    assert [s.tolist() for s in split.train] == [[2, 3], [6, 7]]
    assert split.valid.targets.tolist() == [4] and split.test.targets.tolist() == [5]
    assert split.test.histories[0].tolist() == [2, 3, 4]
    assert [s.tolist() for s in split.train_valid] == [[2, 3, 4], [6, 7]]
    assert left_pad([np.array([2, 3, 4]), np.array([], dtype=np.int64)], 2).tolist() == [[3, 4], [0, 0]]


def test_baselines_rank_what_they_should():
    train = [np.array([2, 3, 4]), np.array([2, 3, 5]), np.array([6, 3, 4]), np.array([4])]
    pop = Popularity(train, n_rows=7)
    assert pop.counts.tolist() == [0, 0, 2, 3, 3, 1, 1]
    cooc = CoOccurrence(train, n_rows=7)
    s = cooc.score([np.array([2, 3])])[0]
    assert s[4] > s[5] > s[6]  # 3 -> 4 twice, 3 -> 5 once, nothing -> 6
    ev = EvalSet((np.array([2, 3]),), np.array([4]))
    assert evaluate_scorer(cooc.score, ev)["mrr"] == 1.0

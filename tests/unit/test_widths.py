"""serving.widths: which users of a batch share a model call."""

import numpy as np
import pytest

from serving.widths import CALL_COLUMNS, FIXED_COLUMNS, split_by_width


def _cost(lengths, groups):
    return sum(len(g) * (max(1, lengths[g].max()) + FIXED_COLUMNS) + CALL_COLUMNS for g in groups)


def test_a_uniform_batch_is_one_call_in_order():
    lengths = np.full(64, 50)
    groups = split_by_width(lengths)
    assert len(groups) == 1 and groups[0].tolist() == list(range(64))


def test_a_few_long_histories_get_their_own_call():
    lengths = np.array([2, 50, 1, 3, 0, 2] * 10 + [50, 50])
    groups = split_by_width(lengths)
    assert len(groups) >= 2
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))  # every row exactly once
    assert set(lengths[groups[-1]].tolist()) == {50}
    assert lengths[groups[0]].max() <= 3
    assert _cost(lengths, groups) < _cost(lengths, [np.arange(len(lengths))])


@pytest.mark.parametrize("seed", range(5))
def test_groups_partition_the_batch_and_never_cost_more(seed):
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(0.1, size=256), 50)
    groups = split_by_width(lengths, max_calls=3)
    assert 1 <= len(groups) <= 3
    assert sorted(np.concatenate(groups).tolist()) == list(range(256))
    assert _cost(lengths, groups) <= _cost(lengths, [np.arange(256)])


def test_small_batches_are_one_call():
    assert [g.tolist() for g in split_by_width(np.array([5]))] == [[0]]
    assert [g.tolist() for g in split_by_width(np.array([1, 50]))] == [[0, 1]]  # a second call costs more

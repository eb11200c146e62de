"""Which users of a batch share a model call: a call is as wide as its longest history.

The model's cost per user grows with the call's width (the Transformer runs over every column), beside a part
that does not (scoring the catalog, the seen mask, the blend, the top-k), and each call has a fixed overhead.
In one call, a few users with long histories make every short one pay their width; calls by length cost less
when enough of the batch is short. Measured with the benchmark's model on the 2-core development CPU
(docs/performance.md): per user about 1 us per column plus 20-30 columns' worth that do not depend on the
width, and about a quarter of a millisecond per call.
"""

from __future__ import annotations

import numpy as np

FIXED_COLUMNS = 24  # a user's cost that does not grow with the width, in columns
CALL_COLUMNS = 256  # a call's overhead, in user-columns
MAX_CALLS = 4


def split_by_width(lengths: np.ndarray, max_calls: int = MAX_CALLS) -> list[np.ndarray]:
    """Row indices of each call for histories of ``lengths`` items (already capped at ``max_len``).

    One group of every row, in order, unless calls by length cost less by the estimate
    ``sum over calls of users * (width + FIXED_COLUMNS) + CALL_COLUMNS``; then groups of rows sorted by length,
    shortest first, each split in two where that lowers the estimate, at most ``max_calls`` groups.
    """
    n = len(lengths)
    if n < 2 or max_calls < 2:
        return [np.arange(n)]
    widths = np.maximum(lengths, 1)  # an empty history still takes one column
    groups = [np.argsort(widths, kind="stable")]
    while len(groups) < max_calls:
        best_gain, best_at = 0.0, None
        for index, group in enumerate(groups):
            gain, cut = _best_cut(widths[group])
            if gain > best_gain:
                best_gain, best_at = gain, (index, cut)
        if best_at is None:
            break
        index, cut = best_at
        group = groups[index]
        groups[index : index + 1] = [group[:cut], group[cut:]]
    return groups if len(groups) > 1 else [np.arange(n)]


def _best_cut(widths: np.ndarray) -> tuple[float, int]:
    """For widths sorted ascending: the estimated saving of the best split in two, and where (rows before it)."""
    n = len(widths)
    if n < 2:
        return 0.0, 0
    whole = n * (widths[-1] + FIXED_COLUMNS)
    k = np.arange(1, n)
    parts = k * (widths[k - 1] + FIXED_COLUMNS) + (n - k) * (widths[-1] + FIXED_COLUMNS) + CALL_COLUMNS
    best = int(np.argmin(parts))
    return float(whole - parts[best]), best + 1

"""Non-neural baselines on the same split: popularity and item-to-item co-occurrence."""

from __future__ import annotations

import numpy as np

from encoders.config import FIRST_ITEM_ID


class Popularity:
    """Scores every item by how often it occurs in the fitted sequences."""

    name = "popularity"

    def __init__(self, sequences: tuple[np.ndarray, ...] | list[np.ndarray], n_rows: int) -> None:
        flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] or [[]])
        self.counts = np.bincount(flat.astype(np.int64), minlength=n_rows)[:n_rows].astype(np.float32)

    def score(self, histories: list[np.ndarray], behaviour: object = None) -> np.ndarray:
        """Scores ``[B, N]``: the same popularity vector for every user (behaviour is not read)."""
        return np.broadcast_to(self.counts, (len(histories), len(self.counts))).copy()


class CoOccurrence:
    """Directed item-to-item co-occurrence ("people who took a then took b").

    ``C[a, b] = sum over sequences and 1 <= d <= window of [b follows a at distance d] / d``.
    A user's score is ``sum_j C[h_j, :] / (j + 1)`` over the ``n_last`` newest history items
    (``j = 0`` newest), with popularity as a tie-breaker far below one co-occurrence.

    Args:
        sequences: fitted internal-id sequences, oldest first.
        n_rows: rows of the item table.
        window: largest distance counted.
        n_last: newest history items used for scoring.
    """

    name = "cooccurrence"

    def __init__(
        self,
        sequences: tuple[np.ndarray, ...] | list[np.ndarray],
        n_rows: int,
        window: int = 3,
        n_last: int = 5,
    ) -> None:
        self.n_rows, self.n_last = n_rows, n_last
        codes, weights = [], []
        for seq in sequences:
            seq = np.asarray(seq, dtype=np.int64)
            for d in range(1, min(window, len(seq) - 1) + 1):
                codes.append(seq[:-d] * n_rows + seq[d:])
                weights.append(np.full(len(seq) - d, 1.0 / d, dtype=np.float64))
        if codes:
            uniq, inv = np.unique(np.concatenate(codes), return_inverse=True)
            vals = np.bincount(inv, weights=np.concatenate(weights))
        else:
            uniq, vals = np.zeros(0, dtype=np.int64), np.zeros(0)
        rows = uniq // n_rows
        self.cols = (uniq % n_rows).astype(np.int64)
        self.vals = vals.astype(np.float32)
        self.indptr = np.searchsorted(rows, np.arange(n_rows + 1))
        pop = Popularity(sequences, n_rows).counts
        self.tiebreak = (1e-3 * pop / max(pop.max(), 1.0)).astype(np.float32)

    def score(self, histories: list[np.ndarray], behaviour: object = None) -> np.ndarray:
        """Scores ``[B, N]`` from the newest ``n_last`` items of each history (behaviour is not read)."""
        out = np.tile(self.tiebreak, (len(histories), 1))
        for b, hist in enumerate(histories):
            for j, item in enumerate(np.asarray(hist)[::-1][: self.n_last]):
                if item < FIRST_ITEM_ID or item >= self.n_rows:
                    continue
                lo, hi = self.indptr[item], self.indptr[item + 1]
                out[b, self.cols[lo:hi]] += self.vals[lo:hi] / (j + 1)
        return out

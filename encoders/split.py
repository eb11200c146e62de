"""Leave-last-out split and left padding of internal-id sequences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encoders.config import PAD_ID


@dataclass(frozen=True)
class EvalSet:
    """Histories (oldest first) and the single target item of each evaluated user."""

    histories: tuple[np.ndarray, ...]
    targets: np.ndarray  # [U] int64

    def __len__(self) -> int:
        return len(self.histories)


@dataclass(frozen=True)
class Split:
    """Leave-last-out split.

    Attributes:
        train: per-user training sequences (``seq[:-2]``; whole sequence for users with < 3).
        valid: history ``seq[:-2]``, target ``seq[-2]`` (users with >= 3 items).
        test: history ``seq[:-1]``, target ``seq[-1]`` (users with >= 3 items).
        train_valid: everything but the test targets (``seq[:-1]``; whole sequence for users
            with < 3), what baselines may fit on before the test.
    """

    train: tuple[np.ndarray, ...]
    valid: EvalSet
    test: EvalSet
    train_valid: tuple[np.ndarray, ...]


def leave_last_out(sequences: list[np.ndarray] | tuple[np.ndarray, ...]) -> Split:
    """Splits internal-id sequences: last item = test, second-to-last = validation."""
    train, train_valid, v_hist, v_tgt, t_hist, t_tgt = [], [], [], [], [], []
    for seq in sequences:
        if len(seq) < 3:
            train.append(seq)
            train_valid.append(seq)
            continue
        train.append(seq[:-2])
        train_valid.append(seq[:-1])
        v_hist.append(seq[:-2])
        v_tgt.append(seq[-2])
        t_hist.append(seq[:-1])
        t_tgt.append(seq[-1])
    return Split(
        tuple(train),
        EvalSet(tuple(v_hist), np.asarray(v_tgt, dtype=np.int64)),
        EvalSet(tuple(t_hist), np.asarray(t_tgt, dtype=np.int64)),
        tuple(train_valid),
    )


def left_pad(seqs: list[np.ndarray] | tuple[np.ndarray, ...], max_len: int) -> np.ndarray:
    """Keeps the last ``max_len`` ids of each sequence, left-padded with 0: ``[N, max_len]``."""
    out = np.full((len(seqs), max_len), PAD_ID, dtype=np.int64)
    for row, seq in enumerate(seqs):
        tail = seq[-max_len:]
        if len(tail):
            out[row, max_len - len(tail) :] = tail
    return out

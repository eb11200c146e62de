"""Leave-last-out split and left padding of internal-id sequences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encoders.config import PAD_ID


@dataclass(frozen=True)
class EvalSet:
    """Histories (oldest first) and the single target item of each evaluated user; with behaviour, the
    ``[T, 2]`` event-type and scenario ids of each history's positions (``serving.behaviour``)."""

    histories: tuple[np.ndarray, ...]
    targets: np.ndarray  # [U] int64
    behaviour: tuple[np.ndarray, ...] | None = None

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
        train_behaviour: the ``[T, 2]`` behaviour ids aligned with ``train`` (None without behaviour).
        train_valid_behaviour: likewise, aligned with ``train_valid``.
    """

    train: tuple[np.ndarray, ...]
    valid: EvalSet
    test: EvalSet
    train_valid: tuple[np.ndarray, ...]
    train_behaviour: tuple[np.ndarray, ...] | None = None
    train_valid_behaviour: tuple[np.ndarray, ...] | None = None

    def refit(self) -> Split:
        """The split to fit again on everything but the test targets (validation targets included); nothing to
        validate on."""
        empty = EvalSet((), np.zeros(0, dtype=np.int64), () if self.valid.behaviour is not None else None)
        return Split(
            self.train_valid, empty, self.test, self.train_valid, self.train_valid_behaviour, self.train_valid_behaviour
        )


def leave_last_out(
    sequences: list[np.ndarray] | tuple[np.ndarray, ...], behaviour: list[np.ndarray] | None = None
) -> Split:
    """Splits internal-id sequences: last item = test, second-to-last = validation.

    Args:
        sequences: internal ids per user, oldest first.
        behaviour: optional ``[T, 2]`` behaviour ids per user, aligned with ``sequences``; they follow the
            histories (a target's own behaviour is never an input).
    """
    train, train_valid, v_hist, v_tgt, t_hist, t_tgt = [], [], [], [], [], []
    b_train: list[np.ndarray] = []
    b_train_valid: list[np.ndarray] = []
    b_valid: list[np.ndarray] = []
    b_test: list[np.ndarray] = []
    steps = behaviour if behaviour is not None else [None] * len(sequences)
    for seq, step in zip(sequences, steps, strict=True):
        if len(seq) < 3:
            train.append(seq)
            train_valid.append(seq)
            if step is not None:
                b_train.append(step)
                b_train_valid.append(step)
            continue
        train.append(seq[:-2])
        train_valid.append(seq[:-1])
        v_hist.append(seq[:-2])
        v_tgt.append(seq[-2])
        t_hist.append(seq[:-1])
        t_tgt.append(seq[-1])
        if step is not None:
            b_train.append(step[:-2])
            b_train_valid.append(step[:-1])
            b_valid.append(step[:-2])
            b_test.append(step[:-1])
    with_b = behaviour is not None
    return Split(
        tuple(train),
        EvalSet(tuple(v_hist), np.asarray(v_tgt, dtype=np.int64), tuple(b_valid) if with_b else None),
        EvalSet(tuple(t_hist), np.asarray(t_tgt, dtype=np.int64), tuple(b_test) if with_b else None),
        tuple(train_valid),
        tuple(b_train) if with_b else None,
        tuple(b_train_valid) if with_b else None,
    )


def left_pad(seqs: list[np.ndarray] | tuple[np.ndarray, ...], max_len: int) -> np.ndarray:
    """Keeps the last ``max_len`` ids of each sequence, left-padded with 0: ``[N, max_len]`` (``[N, max_len, 2]``
    for ``[T, 2]`` behaviour ids)."""
    tail_shape = np.shape(seqs[0])[1:] if len(seqs) else ()
    out = np.full((len(seqs), max_len, *tail_shape), PAD_ID, dtype=np.int64)
    for row, seq in enumerate(seqs):
        tail = seq[-max_len:]
        if len(tail):
            out[row, max_len - len(tail) :] = tail
    return out

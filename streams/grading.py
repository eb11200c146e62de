"""Online grading: each event answers the list the user was served just before it."""

from __future__ import annotations

import math
import time
import zlib
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

KS = (1, 5, 10)  # the cut-offs graded (bounded: they label metrics)


@dataclass(slots=True)  # built per graded event: not frozen (see streams.records.Event); never mutated
class Grade:
    """Where the event's item stood in the served list: a 0-based rank, or None for a miss."""

    rank: int | None

    def hit(self, k: int) -> float:
        return 1.0 if self.rank is not None and self.rank < k else 0.0

    def ndcg(self, k: int) -> float:
        """NDCG@k with one relevant item: 1 / log2(rank + 2) when it is within the first k."""
        return 1.0 / math.log2(self.rank + 2) if self.rank is not None and self.rank < k else 0.0

    @property
    def reciprocal_rank(self) -> float:
        return 1.0 / (self.rank + 1) if self.rank is not None else 0.0


MISS = Grade(None)


def grade(item: str, served: Sequence[str], seen: Collection[str]) -> Grade:
    """Grade ``item`` (what the user did next) against ``served`` (the list shown before).

    As in offline evaluation (``encoders.evaluate``, seen items excluded from the ranking), an item the user
    already had in their sequence cannot be a hit: the list never contains it, so a repeat is a miss.
    """
    if item not in served or item in seen:  # most events miss: no exception raised and caught for them
        return MISS
    return Grade(served.index(item))


def in_shadow_share(user_id: str, fraction: float) -> bool:
    """Whether the shadow model scores ``user_id``: a stable share of users, the same ones on every worker."""
    return fraction >= 1.0 or zlib.crc32(user_id.encode()) % 10_000 < fraction * 10_000


class ServedLists:
    """The lists just served (trigger offset, model and item ids, live and shadow), per events partition, until
    the partition's batches write them into the users' table values (and so to its changelog).

    The agent owns the table: a list is written with the first batch of its partition that comes at least
    ``delay`` seconds after it was served, for a user whose sequence has not moved on since. A user's next event
    within the delay makes the list obsolete (the event's own value replaces it), so an active user costs one
    table write (and changelog record) per event instead of two. Until written, a list is graded from here;
    what a crash or a rebalance takes before that write (the lists of the last ``delay`` seconds, or of a
    partition that has had no event since) is not graded.

    Args:
        delay: seconds a list stays in memory only (0: written with the partition's next batch).
        clock: monotonic seconds.
    """

    def __init__(self, delay: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self._clock = clock
        self._by_partition: dict[int, dict[bytes, dict]] = {}  # the newest list per user
        # per partition, what each put served and when, oldest first
        self._puts: dict[int, deque[tuple[float, dict[bytes, dict]]]] = {}

    def get(self, partition: int, key: bytes) -> dict | None:
        return self._by_partition.get(partition, {}).get(key)

    def put(self, partition: int, values: dict[bytes, dict]) -> None:
        self._by_partition.setdefault(partition, {}).update(values)
        self._puts.setdefault(partition, deque()).append((self._clock(), values))

    def take(self, partition: int) -> dict[bytes, dict]:
        """The partition's lists served at least ``delay`` ago and not written yet, handed over (and forgotten
        here); a user's newer list stays."""
        puts = self._puts.get(partition)
        if not puts:
            return {}
        newest = self._by_partition[partition]
        due = self._clock() - self.delay
        taken: dict[bytes, dict] = {}
        while puts and puts[0][0] <= due:
            for key, value in puts.popleft()[1].items():
                if newest.get(key) is value:  # not served again since
                    taken[key] = newest.pop(key)
        return taken

    def drop(self, partitions: set[int] | None = None) -> None:
        """Forget ``partitions`` (None: all)."""
        if partitions is None:
            self._by_partition.clear()
            self._puts.clear()
        for partition in partitions or ():
            self._by_partition.pop(partition, None)
            self._puts.pop(partition, None)

    def __len__(self) -> int:
        return sum(len(values) for values in self._by_partition.values())

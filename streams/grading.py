"""Online grading: each event answers the list the user was served just before it."""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Sequence
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
    try:
        rank = served.index(item)
    except ValueError:
        return MISS
    return MISS if item in seen else Grade(rank)


def in_shadow_share(user_id: str, fraction: float) -> bool:
    """Whether the shadow model scores ``user_id``: a stable share of users, the same ones on every worker."""
    return fraction >= 1.0 or zlib.crc32(user_id.encode()) % 10_000 < fraction * 10_000


class ServedLists:
    """The lists just served (trigger offset, model and item ids, live and shadow), per events partition, until
    the partition's next batch writes them into the users' table values (and so to its changelog).

    The agent owns the table: a list is written with the next batch of its partition, for users whose sequence
    has not moved on since. Until then it is graded from here; what a crash or a rebalance takes before that
    write (the lists of the moment, or of a partition that has had no event since) is not graded.
    """

    def __init__(self) -> None:
        self._by_partition: dict[int, dict[bytes, dict]] = {}

    def get(self, partition: int, key: bytes) -> dict | None:
        return self._by_partition.get(partition, {}).get(key)

    def put(self, partition: int, values: dict[bytes, dict]) -> None:
        self._by_partition.setdefault(partition, {}).update(values)

    def take(self, partition: int) -> dict[bytes, dict]:
        """The partition's lists not yet written, handed over (and forgotten here)."""
        return self._by_partition.pop(partition, {})

    def drop(self, partitions: set[int] | None = None) -> None:
        """Forget ``partitions`` (None: all)."""
        if partitions is None:
            self._by_partition.clear()
        for partition in partitions or ():
            self._by_partition.pop(partition, None)

    def __len__(self) -> int:
        return sum(len(values) for values in self._by_partition.values())

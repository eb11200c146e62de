"""The live catalog: every item published on `items`, and the score masks it implies for a model.

An unavailable item is never recommended. With the scenario filter, a list made for an event of scenario S
holds only items of scenario S, or items whose scenario the catalog does not know (so an empty or partial
catalog never empties a list); the user's history spans every scenario.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Protocol

import numpy as np

from streams.items import Item

NO_SCENARIO = ""  # the metric label of items without a scenario
MAX_CACHED_MASKS = 64


class Scorer(Protocol):
    """What the catalog reads of an engine's item rows (``serving.engine.ItemRows``)."""

    version: str
    vocab: dict[str, int]  # item id -> row
    item_bias: np.ndarray  # the model's bias row (pad and unknown rows -inf); never modified here


class Catalog:
    """Thread-safe: the catalog reader writes, the model thread reads masks (cached per model and catalog state)."""

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._published: dict[str, float] = {}  # item id -> Kafka timestamp of the record that made it what it is
        self._lock = threading.Lock()
        self._state = 0  # bumped on every change: cached masks are rebuilt lazily
        self._masks: dict[tuple[str, int, str | None], tuple[int, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    def apply(self, item_id: str, item: Item | None, published: float | None = None) -> None:
        """Put ``item`` (None: remove ``item_id``); ``published``: its record's timestamp (epoch seconds)."""
        with self._lock:
            if item is None:
                self._published.pop(item_id, None)
                if self._items.pop(item_id, None) is None:
                    return
            elif self._items.get(item_id) == item:
                return
            else:
                self._items[item_id] = item
                if published is not None:
                    self._published[item_id] = published
            self._state += 1

    def published_at(self, item_id: str) -> float | None:
        """When the record that made the item what it is was published (None: unknown)."""
        return self._published.get(item_id)

    def counts(self) -> Counter[tuple[str, bool]]:
        """Items by (scenario, available)."""
        with self._lock:
            return Counter((item.scenario or NO_SCENARIO, item.available) for item in self._items.values())

    @property
    def state(self) -> int:
        """Bumped on every change."""
        return self._state

    def items(self) -> list[Item]:
        with self._lock:
            return list(self._items.values())

    def bias(self, engine: Scorer, scenario: str | None) -> np.ndarray:
        """The engine's item bias with -inf for the rows this catalog excludes for ``scenario`` (None: no
        scenario filter)."""
        key = (engine.version, len(engine.item_bias), scenario)
        cached = self._masks.get(key)
        state = self._state
        if cached is not None and cached[0] == state:
            return cached[1]
        items = self.items()
        vocab = engine.vocab
        bias = engine.item_bias.copy()
        excluded = [vocab[item.item_id] for item in items if item.item_id in vocab and _excluded(item, scenario)]
        if excluded:
            bias[np.asarray(excluded, dtype=np.int64)] = -np.inf
        if len(self._masks) >= MAX_CACHED_MASKS:
            self._masks.clear()
        self._masks[key] = (state, bias)
        return bias


def _excluded(item: Item, scenario: str | None) -> bool:
    if not item.available:
        return True
    return scenario is not None and item.scenario is not None and item.scenario != scenario

"""Item vocabulary: external item ids <-> internal ids (0 pad, 1 unknown, 2.. items)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from encoders.config import FIRST_ITEM_ID, UNK_ID
from encoders.data import Interactions, natural_key
from serving.artifact import ITEMS_HEADER


@dataclass(frozen=True)
class Vocabulary:
    """Catalog items in internal-id order: ``item_ids[k]`` has internal id ``k + 2``."""

    item_ids: tuple[str, ...]
    titles: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.titles) != len(self.item_ids):
            raise ValueError("titles and item_ids must have the same length")
        index = {item: k + FIRST_ITEM_ID for k, item in enumerate(self.item_ids)}
        if len(index) != len(self.item_ids):
            raise ValueError("item ids must be unique")
        object.__setattr__(self, "_index", index)

    @property
    def n_items(self) -> int:
        """Number of catalog items (rows of the item table minus 2)."""
        return len(self.item_ids)

    @property
    def n_rows(self) -> int:
        """Rows of the item table: pad, unknown and the items."""
        return len(self.item_ids) + FIRST_ITEM_ID

    def encode(self, item_id: str) -> int:
        """Internal id of an external item id (``UNK_ID`` when unknown)."""
        return self._index.get(item_id, UNK_ID)

    def encode_seq(self, items: tuple[str, ...] | list[str]) -> np.ndarray:
        """Internal ids (int64) of a sequence of external item ids."""
        return np.fromiter((self.encode(i) for i in items), dtype=np.int64, count=len(items))

    def external(self, internal_id: int) -> str:
        """External item id of an internal id (``""`` for pad and unknown)."""
        k = internal_id - FIRST_ITEM_ID
        return self.item_ids[k] if 0 <= k < len(self.item_ids) else ""

    @classmethod
    def build(cls, data: Interactions, include_catalog_only: bool) -> Vocabulary:
        """Builds the vocabulary of a data set.

        Items touched by some user come first in natural id order; with
        ``include_catalog_only`` (text available: they get a cold-start row from their text),
        items known only from the catalog follow.
        """
        used = {i for seq in data.sequences for i in seq}
        ids = sorted(used, key=natural_key)
        if include_catalog_only:
            ids += sorted((i for i in data.items if i not in used), key=natural_key)
        titles = tuple(data.items[i].title if i in data.items else "" for i in ids)
        return cls(tuple(ids), titles)

    def write_tsv(self, path: str | Path) -> None:
        """Writes ``items.tsv``: header ``internal_id item_id title``, one line per item."""
        lines = ["\t".join(ITEMS_HEADER) + "\n"]
        for k, (item, title) in enumerate(zip(self.item_ids, self.titles)):
            if any(c in item for c in "\t\r\n"):
                raise ValueError(f"item id {item!r} contains a tab or newline")
            clean = " ".join(title.split())  # no tabs or newlines, no quoting needed
            lines.append(f"{k + FIRST_ITEM_ID}\t{item}\t{clean}\n")
        Path(path).write_text("".join(lines), encoding="utf-8")

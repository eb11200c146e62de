"""How the rows of items added while serving (new items, from their text) compete with the trained rows.

A text row's raw score is not on the trained rows' scale: trained as text-only rows, new items either never reach a
list or crowd out what the user came for. The graph (``encoders.export.mix_new_rows``) therefore ranks the union as
a mixture, each user on their own: with probability ``1 - share`` the next item is a trained one (the softmax over
the trained rows), with probability ``share`` a new one (the softmax over the new rows' scores divided by
``temperature``, beside a "none of these" pseudo-row whose score is the log of ``mass`` times the trained rows' total
``sum exp``). A new item reaches a list when the user's distribution over the new items is peaked on it, e.g. the
sequel of the film just watched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FALLBACK_TEMPERATURE = 1.0  # a version without a chosen one (exported from a checkpoint without it): the raw logits


@dataclass(frozen=True, slots=True)
class NewRowMix:
    """The mixture's three numbers (settings ``STREAMREC_NEW_ITEM_SHARE``, ``_TEMPERATURE``, ``_MASS``).

    Args:
        share: the probability that a user's next item is a new one; None (``auto``): the new rows' part of the
            catalog, at least ``min_share`` (new items held out at random from a catalog draw about that share of
            the events).
        min_share: the least ``auto`` share while there are new rows, so that a handful of new items can still be
            recommended to the users whose scores favour them.
        temperature: divides the new rows' scores (> 1: flatter, so one new item is rarely far more likely than
            another); None (``auto``): the version's own, chosen on validation users at training
            (``text.mixture.temperature`` of its manifest, :mod:`encoders.mixture_fit`), else
            :data:`FALLBACK_TEMPERATURE`.
        mass: the "none of these" pseudo-row among the new rows: its score is ``log(mass * sum exp(trained scores))``.
    """

    share: float | None = None
    min_share: float = 0.05
    temperature: float | None = None
    mass: float = 0.01

    def __post_init__(self) -> None:
        for name, value in (("share", self.share), ("min_share", self.min_share)):
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"the new items' {name} must be in [0, 1), not {value}")
        if self.temperature is not None and not self.temperature > 0.0:
            raise ValueError(f"the new items' temperature must be > 0, not {self.temperature}")
        if not self.mass >= 0.0:
            raise ValueError(f"the new items' mass must be >= 0, not {self.mass}")

    def share_for(self, rows: int, new_rows: int) -> float:
        """The share used with ``new_rows`` new rows among ``rows`` recommendable rows (0 without new rows)."""
        if not new_rows:
            return 0.0
        if self.share is not None:
            return self.share
        return min(max(new_rows / max(rows, 1), self.min_share), 0.999)

    def temperature_for(self, manifest: dict[str, Any]) -> float:
        """This mix's temperature, else the version's (its manifest's ``text.mixture``), else the fallback."""
        if self.temperature is not None:
            return self.temperature
        chosen = ((manifest.get("text") or {}).get("mixture") or {}).get("temperature")
        return float(chosen) if isinstance(chosen, int | float) and chosen > 0 else FALLBACK_TEMPERATURE

    def feed(self, rows: int, new_rows: int, temperature: float) -> np.ndarray:
        """The graph's ``new_mix`` input: float32 ``[share, temperature, mass]``."""
        return np.array([self.share_for(rows, new_rows), temperature, self.mass], dtype=np.float32)


DEFAULT_MIX = NewRowMix()  # the worker's defaults (the settings' defaults)

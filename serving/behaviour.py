"""Behaviour vocabularies: the event type and scenario of every sequence position, as the model's ids.

Shared by training (``encoders``) and the worker (``serving.engine``), so a position means the same to both.
Ids: 0 padding, 1 "other" (a value outside the bounded vocabulary, or a position whose behaviour is not known,
e.g. a table value written before sequences kept it), 2.. the known values in vocabulary order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PAD = 0
OTHER = 1
FIRST = 2
MAX_EVENT_TYPES = 16
MAX_SCENARIOS = 32
NO_SCENARIO = ""  # the scenario value of an event that names none


@dataclass(frozen=True)
class Behaviours:
    """The event types and scenarios a model knows, in id order (value ``k`` has id ``k + 2``)."""

    event_types: tuple[str, ...]
    scenarios: tuple[str, ...]
    _types: dict[str, int] = field(init=False, repr=False, compare=False)
    _scenarios: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, values in (("event_types", self.event_types), ("scenarios", self.scenarios)):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} repeats a value: {values}")
        object.__setattr__(self, "_types", {v: k + FIRST for k, v in enumerate(self.event_types)})
        object.__setattr__(self, "_scenarios", {v: k + FIRST for k, v in enumerate(self.scenarios)})

    @property
    def n_types(self) -> int:
        """Rows of the event-type embedding (padding, other, the types)."""
        return len(self.event_types) + FIRST

    @property
    def n_scenarios(self) -> int:
        """Rows of the scenario embedding (padding, other, the scenarios)."""
        return len(self.scenarios) + FIRST

    def encode(self, types: Sequence[str | None], scenarios: Sequence[str | None]) -> np.ndarray:
        """Ids ``[T, 2]`` (type, scenario) of ``T`` positions; None or an unknown value is ``OTHER``."""
        out = np.empty((len(types), 2), dtype=np.int64)
        out[:, 0] = [self._types.get(t, OTHER) for t in types]  # type: ignore[arg-type]
        out[:, 1] = [self._scenarios.get(s, OTHER) for s in scenarios]  # type: ignore[arg-type]
        return out

    def fill(self, out: np.ndarray, row: int, types: Sequence[str | None], scenarios: Sequence[str | None]) -> None:
        """Writes the ids of the newest positions right-aligned into ``out[:, row]`` (``out`` is ``[2, B, L]``);
        positions whose behaviour is missing (a shorter list) are ``OTHER``, the rest stays as it is."""
        length = out.shape[2]
        for channel, values, index in ((0, types, self._types), (1, scenarios, self._scenarios)):
            tail = values[-length:]
            if tail:
                out[channel, row, length - len(tail) :] = [index.get(v, OTHER) for v in tail]  # type: ignore[arg-type]

    def to_manifest(self) -> dict[str, list[str]]:
        return {"event_types": list(self.event_types), "scenarios": list(self.scenarios)}

    @classmethod
    def from_manifest(cls, value: Mapping[str, Any] | None) -> Behaviours | None:
        """The manifest's ``behaviour`` entry (None: a model without behaviour inputs)."""
        if not value:
            return None
        return cls(tuple(str(v) for v in value["event_types"]), tuple(str(v) for v in value["scenarios"]))

    @classmethod
    def build(cls, types: Iterable[str], scenarios: Iterable[str]) -> Behaviours:
        """The most frequent values of a data set (at most ``MAX_EVENT_TYPES`` types and ``MAX_SCENARIOS``
        scenarios; rarer ones are "other"), most frequent first."""
        top_types = [v for v, _ in Counter(types).most_common(MAX_EVENT_TYPES)]
        top_scenarios = [v for v, _ in Counter(scenarios).most_common(MAX_SCENARIOS)]
        return cls(tuple(top_types), tuple(top_scenarios))

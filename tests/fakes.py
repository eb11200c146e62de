"""Fakes shared by the unit and agent tiers: a model that needs no ONNX file, and capturing sinks."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from serving.engine import ScoredItem


class FakeEngine:
    """Recommends the catalog items not in the sequence, in catalog order; records each call."""

    version = "fake-v1"
    device = "cpu"

    def __init__(self, catalog):
        self.catalog = catalog
        self.calls = []
        self.vocab = {item: row for row, item in enumerate(catalog)}
        self.item_bias = np.zeros(len(catalog), dtype=np.float32)

    def recommend(self, sequences, k, item_bias=None, behaviours=None):
        self.calls.append([tuple(s) for s in sequences])
        if callable(item_bias):
            item_bias = item_bias(self)
        allowed = (
            self.catalog if item_bias is None else [i for i in self.catalog if np.isfinite(item_bias[self.vocab[i]])]
        )
        out = []
        for seq in sequences:
            free = [i for i in allowed if i not in seq][:k]
            out.append([ScoredItem(item, float(k - rank), seq[-1] if seq else None) for rank, item in enumerate(free)])
        return out


class FakeRegistry:
    follows_root = False
    shadow_source = None

    def __init__(self, engine, shadow=None):
        self.current = engine
        self.shadow = shadow


class Sink:
    """Captures (key, decoded value); ``fail`` makes the next deliveries fail, like a broker that refuses."""

    def __init__(self):
        self.records = []
        self.fail = 0

    async def many(self, records):
        """The bulk form (recommendations): every record, then one delivery future."""
        return [await self(key, value) for key, value in records]

    async def __call__(self, key, value):
        self.records.append((key, json.loads(value)))
        delivered = asyncio.get_running_loop().create_future()
        if self.fail:
            self.fail -= 1
            delivered.set_exception(RuntimeError("broker said no"))
        else:
            delivered.set_result(None)
        return delivered


def event(user, item, ts=1.0, event_id=None, event_type="click"):
    return json.dumps(
        {"user_id": user, "item_id": item, "event_type": event_type, "ts": ts, "event_id": event_id}
    ).encode()

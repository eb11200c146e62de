"""New catalog items added to a real engine from their text (a fake text encoder: the ONNX one has its own test)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from serving.artifact import load_artifact, resolve_version
from serving.engine import Engine
from serving.registry import SWAPPED, ModelRegistry, engine_loader
from streams.catalog import Catalog
from streams.items import Item
from streams.metrics import Metrics
from streams.new_items import BATCH, NewItems


class FakeText:
    """Gives each text the row of the warm item named in it, scaled up (so that item's fans get it first)."""

    def __init__(self, engine):
        self.engine = engine
        self.calls = 0

    def rows(self, texts):
        self.calls += 1
        out = []
        for text in texts:
            like = text.split("like ")[-1].split(".")[0]
            out.append(self.engine.rows.emb[self.engine.vocab[like]] * 3 if like in self.engine.vocab else 0)
        return np.vstack([np.broadcast_to(np.asarray(r, np.float32), self.engine.rows.emb.shape[1]) for r in out])


@pytest.fixture()
def engine(model_root, tmp_path):
    source = resolve_version(model_root)
    shutil.copytree(source, tmp_path / source.name)
    return Engine(load_artifact(tmp_path / source.name), device="cpu")


def test_new_items_are_embedded_once_per_engine_and_only_when_available_with_text(engine):
    catalog, metrics = Catalog(), Metrics.create(CollectorRegistry())
    encoders = {}
    new_items = NewItems(catalog, metrics, lambda e: encoders.setdefault(e, FakeText(e)))
    warm = next(iter(engine.vocab))
    catalog.apply("fresh", Item("fresh", title=f"like {warm}"), published=1.0)
    catalog.apply("sold-out", Item("sold-out", title=f"like {warm}", available=False))
    catalog.apply("nameless", Item("nameless"))
    catalog.apply(warm, Item(warm, title="a trained item"))
    assert new_items.sync(engine) == 1
    assert "fresh" in engine.vocab and "sold-out" not in engine.vocab and "nameless" not in engine.vocab
    assert metrics.items_embedded._value.get() == 1 and metrics.item_recommendable._sum.get() > 0
    assert new_items.sync(engine) == 0 and encoders[engine].calls == 1  # nothing changed: no encoder call
    catalog.apply("sold-out", Item("sold-out", title=f"like {warm}", available=True))
    assert new_items.sync(engine) == 1 and "sold-out" in engine.vocab


def test_a_new_version_gets_the_catalog_before_it_serves_and_many_items_go_in_batches(engine, tmp_path):
    catalog, metrics = Catalog(), Metrics.create(CollectorRegistry())
    warm = list(engine.vocab)[:5]
    for n in range(BATCH + 10):
        catalog.apply(f"n{n}", Item(f"n{n}", title=f"like {warm[n % 5]}"))
    new_items = NewItems(catalog, metrics, FakeText)
    prepared = new_items.prepare(engine)
    assert prepared is engine and all(f"n{n}" in engine.vocab for n in range(BATCH + 10))
    assert metrics.item_recommendable._sum.get() == 0  # not serving yet: not counted as made recommendable
    other = Engine(engine.artifact, device="cpu")
    assert NewItems(catalog, metrics, lambda e: None).sync(other) == 0  # no text encoder: nothing, and no error
    assert len(other.rows) == other.trained_rows


def test_a_swapped_in_version_serves_the_new_items_from_its_first_batch(engine, tmp_path):
    root = engine.artifact.path.parent
    catalog, metrics = Catalog(), Metrics.create(CollectorRegistry())
    warm = next(iter(engine.vocab))
    new_items = NewItems(catalog, metrics, FakeText)
    registry = ModelRegistry(root, engine_loader("cpu", 8, 0, True, prepare=new_items.prepare))
    catalog.apply("fresh", Item("fresh", title=f"like {warm}"))
    new_items.sync(registry.current)
    assert "fresh" in registry.current.vocab
    newer = root / "99990102T000000Z-good00"
    shutil.copytree(engine.artifact.path, newer)
    manifest = json.loads((newer / "manifest.json").read_text())
    (newer / "manifest.json").write_text(json.dumps({**manifest, "model_version": newer.name}))
    assert registry.poll() == SWAPPED
    assert registry.current.version == newer.name and "fresh" in registry.current.vocab  # before its first batch

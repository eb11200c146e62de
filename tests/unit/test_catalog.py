"""The live catalog: the items contract, the masks it gives a model, and per-scenario lists in the pipeline."""

import asyncio
import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streams.catalog import Catalog
from streams.items import Item, item_record, parse_item
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.records import BAD_FIELD, BAD_KEY, NOT_JSON, InvalidEvent
from streams.settings import Settings
from streams.source import Source
from streams.tools.items_file import read_items
from tests.fakes import FakeEngine, FakeRegistry, Sink


def test_an_item_record_round_trips_and_a_tombstone_removes():
    item = Item("i1", "red kettle", "a red kettle", "kitchen", "shop", False)
    assert parse_item(item_record(item), b"i1") == item
    assert parse_item(None, b"i1") is None
    assert parse_item(b'{"item_id": 7}', b"7") == Item("7")  # defaults: no text, available


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        (b'{"item_id": "i1"}', None, BAD_KEY),
        (b'{"item_id": "i1"}', b"i2", BAD_KEY),
        (b"{not json", b"i1", NOT_JSON),
        (b'{"item_id": "i1", "available": "no"}', b"i1", BAD_FIELD),
        (b'{"item_id": "i1", "title": 5}', b"i1", BAD_FIELD),
    ],
)
def test_invalid_item_records_have_a_reason(raw, key, reason):
    with pytest.raises(InvalidEvent) as caught:
        parse_item(raw, key)
    assert caught.value.reason == reason


def test_masks_remove_unavailable_items_and_other_scenarios_and_follow_changes():
    engine = FakeEngine(["a", "b", "c", "d"])
    catalog = Catalog()
    catalog.apply("a", Item("a", scenario="shop"))
    catalog.apply("b", Item("b", scenario="video"))
    catalog.apply("c", Item("c", scenario="shop", available=False))
    catalog.apply("zz", Item("zz"))  # not in the model: nothing to mask
    finite = lambda bias: [i for i in engine.catalog if np.isfinite(bias[engine.vocab[i]])]  # noqa: E731
    assert finite(catalog.bias(engine, None)) == ["a", "b", "d"]
    assert finite(catalog.bias(engine, "shop")) == ["a", "d"]  # d: no known scenario, kept
    assert finite(catalog.bias(engine, "video")) == ["b", "d"]
    catalog.apply("c", Item("c", scenario="shop"))  # available again
    assert finite(catalog.bias(engine, "shop")) == ["a", "c", "d"]
    catalog.apply("a", None)  # removed from the catalog: no longer filtered
    assert finite(catalog.bias(engine, "video")) == ["a", "b", "d"]
    assert np.isfinite(engine.item_bias).all()  # the model's own row is untouched
    assert catalog.counts() == {("video", True): 1, ("shop", True): 1, ("", True): 1}


def test_the_pipeline_scores_each_scenario_with_its_own_mask_over_one_history():
    settings = Settings(max_len=10, top_k=3, metrics_port=0)
    engine = FakeEngine(["s1", "s2", "s3", "v1", "v2", "v3"])
    catalog = Catalog()
    for item in engine.catalog:
        catalog.apply(item, Item(item, scenario="shop" if item.startswith("s") else "video"))
    catalog.apply("s3", Item("s3", scenario="shop", available=False))
    recs = Sink()
    pipeline = Pipeline(
        settings, FakeRegistry(engine), Metrics.create(CollectorRegistry()), {}, recs.many, Sink(), catalog=catalog
    )

    def raw(user, item, scenario):
        return json.dumps(
            {"user_id": user, "item_id": item, "event_type": "click", "ts": 1.0, "scenario": scenario}
        ).encode()

    async def run():
        batch = await pipeline.ingest(
            [
                (Source("events", 0, 0, b"u1", 1.0), raw("u1", "v1", "video")),
                (Source("events", 0, 1, b"u1", 1.0), raw("u1", "s1", "shop")),  # u1's newest: a shop event
                (Source("events", 0, 2, b"u2", 1.0), raw("u2", "s2", "video")),
            ]
        )
        await pipeline.publish(batch, engine, pipeline.score(engine, list(batch.updates.values())))

    asyncio.run(run())
    lists = {r["user_id"]: ([i["item_id"] for i in r["items"]], r["scenario"]) for _, r in recs.records}
    assert lists == {"u1": (["s2"], "shop"), "u2": (["v1", "v2", "v3"], "video")}
    assert engine.calls == [[("v1", "s1")], [("s2",)]]  # one call per scenario; u1's history spans both


def test_catalog_files_jsonl_and_movielens(tmp_path):
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(json.dumps({"item_id": "i1", "title": "kettle", "available": False}) + "\n\n")
    assert list(read_items(jsonl, scenario="shop")) == [Item("i1", "kettle", "", None, "shop", False)]
    movies = tmp_path / "movies.dat"
    movies.write_bytes("1::Toy Story (1995)::Animation|Children's\n".encode("latin-1"))
    assert list(read_items(movies)) == [
        Item("1", "Toy Story (1995)", "Toy Story (1995). Animation, Children's", "Animation")
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_id": "i1"}\n{"item_id": "i2", "available": 3}\n')
    with pytest.raises(ValueError, match="bad.jsonl line 2: bad_field"):
        list(read_items(bad))

"""A RocksDB table store gets bounded memory options, and they open a working database."""

from prometheus_client import CollectorRegistry

from streams.app import TABLE_NAME, build_app
from streams.metrics import Metrics
from streams.rocksdb import MIB, BoundedRocksDBOptions
from streams.settings import Settings
from tests.fakes import FakeEngine, FakeRegistry, Sink


def test_a_rocksdb_store_gets_the_bounded_options_and_they_work(tmp_path):
    settings = Settings(
        app_id="rocks-test",
        store="rocksdb://",
        data_dir=tmp_path,
        metrics_port=0,
        model_poll_seconds=0,
        rocksdb_cache_mb=4,
        rocksdb_write_buffer_mb=2,
    )
    app, _ = build_app(
        settings, FakeRegistry(FakeEngine(["i1"])), Metrics.create(CollectorRegistry()), sinks=(Sink().many, Sink())
    )
    options = app.tables[TABLE_NAME].data.rocksdb_options
    assert isinstance(options, BoundedRocksDBOptions)
    assert options.block_cache_size == 4 * MIB and options.write_buffer_size == 2 * MIB
    db = options.open(tmp_path / "partition-0.db")
    db[b"u1"] = b'{"items": ["i1"], "offset": 0}'
    assert db[b"u1"] == b'{"items": ["i1"], "offset": 0}'
    db.close()

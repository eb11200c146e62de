"""RocksDB table stores with bounded memory: faust's options, plus index and filter blocks in the block cache."""

from __future__ import annotations

from typing import Any

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from streams.settings import Settings

MIB = 1 << 20


class BoundedRocksDBOptions(RocksDBOptions):
    """faust's RocksDB options (rocksdict driver) with the index and filter blocks charged to the block cache.

    By default RocksDB keeps the index and filter blocks of every table file outside the cache, so a store's
    memory grows with its data; charged to the cache, a partition's store stays within its cache plus its
    write buffers whatever it holds.
    """

    def as_options(self) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(rocksdict.Cache(self.block_cache_size))
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        return options


def rocksdb_options(settings: Settings) -> dict[str, Any]:
    """The table options for a RocksDB store (faust's defaults allow a 2 GiB cache and 3 x 64 MiB buffers)."""
    return {
        "block_cache_size": settings.rocksdb_cache_mb * MIB,
        "write_buffer_size": settings.rocksdb_write_buffer_mb * MIB,
        "max_write_buffer_number": 2,
        "target_file_size_base": 4 * settings.rocksdb_write_buffer_mb * MIB,
    }


def bound_store_memory(store: Any) -> None:
    """Give a faust RocksDB store (before it opens any partition) the bounded options; other stores are left."""
    options = getattr(store, "rocksdb_options", None)
    if isinstance(options, RocksDBOptions) and getattr(store, "use_rocksdict", False):
        bounded = BoundedRocksDBOptions()
        bounded.__dict__.update(options.__dict__)
        store.rocksdb_options = bounded

"""The bulk sender's partition per key is the one aiokafka's default partitioner (and the Java client) picks."""

from aiokafka.partitioner import DefaultPartitioner

from streams.bulk_send import KeyHashes


def test_key_hashes_pick_the_default_partitioners_partition_before_and_after_the_memory_starts_afresh():
    default = DefaultPartitioner()
    hashes = KeyHashes(kept=50)
    keys = [f"user-{n}".encode() for n in range(120)] + ["ünï-çødé".encode(), b"", b"\x00\xff"]
    for count in (1, 3, 12):
        partitions = list(range(count))
        for _ in range(2):  # computed, then remembered (or computed again once the memory started afresh)
            assert [hashes.partition(k, partitions) for k in keys] == [default(k, partitions, partitions) for k in keys]
    assert len(hashes._hashes) <= 50
    assert len({hashes.partition(k, list(range(12))) for k in keys}) == 12  # keys spread over the partitions

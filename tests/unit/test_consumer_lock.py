"""The consumer's seek to committed offsets never overlaps a fetch pending in the consumer thread."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from streams.consumer import REBALANCE_FETCH_SECONDS, Consumer

EVENTS = TP("events", 0)


class FakeThread:
    """The consumer thread: records when each call starts and ends."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def seek_to_committed(self) -> dict[TP, int]:
        self.log.append("seek")
        return {EVENTS: -1}

    async def seek_to_beginning(self, *tps: TP) -> None:
        self.log.append(f"beginning {len(tps)}")


def fake_consumer(log: list[str], release: asyncio.Event, *, rebalancing: bool) -> Consumer:
    consumer = object.__new__(Consumer)  # only the attributes the two methods read

    async def getmany(active_partitions: set[TP], timeout: float) -> dict:
        log.append(f"fetch {timeout}")
        await release.wait()
        log.append("fetch done")
        return {}

    consumer.__dict__.update(
        flow_active=True,
        not_waiting_next_records=asyncio.Event(),
        app=SimpleNamespace(client_only=False, rebalancing=rebalancing, tables=SimpleNamespace(changelog_topics=set())),
        _getmany=getmany,
        _get_active_partitions=lambda: {EVENTS},
        _thread=FakeThread(log),
    )
    return consumer


def test_a_seek_waits_for_the_pending_fetch_and_rebalance_fetches_are_short():
    async def scenario() -> list[str]:
        log: list[str] = []
        release = asyncio.Event()
        consumer = fake_consumer(log, release, rebalancing=True)
        fetch = asyncio.ensure_future(consumer._wait_next_records(1.0))
        await asyncio.sleep(0.01)
        seek = asyncio.ensure_future(consumer.seek_to_committed())
        await asyncio.sleep(0.01)
        assert "seek" not in log  # held back while the fetch is pending
        release.set()
        await fetch
        assert await seek == {EVENTS: -1}
        return log

    log = asyncio.run(scenario())
    assert log == [f"fetch {REBALANCE_FETCH_SECONDS}", "fetch done", "seek", "beginning 1"]


def test_outside_a_rebalance_the_fetch_keeps_its_timeout():
    async def scenario() -> list[str]:
        log: list[str] = []
        release = asyncio.Event()
        release.set()
        consumer = fake_consumer(log, release, rebalancing=False)
        records, active = await consumer._wait_next_records(1.0)
        assert (records, active) == ({}, {EVENTS})
        return log

    assert asyncio.run(scenario()) == ["fetch 1.0", "fetch done"]

"""faust's Kafka consumer, tuned for latency: no 1 s pause after a full stream buffer, no 1.5 s fetch waits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

logger = logging.getLogger(__name__)

# faust stops fetching a partition whose stream buffer is full, and when every partition is in that state it
# sleeps a whole second before looking again. Under load that turns one full buffer into a stop-and-go cycle:
# the buffer drains in a fraction of the second, the fetcher sleeps on, the backlog grows, the buffer fills
# again, and every event waits about as long as a full buffer takes to drain (1.4-1.6 s at 3,000 events/s on
# the development machine), for as long as the load lasts.
RESUME_CHECK_SECONDS = 1.0
# faust has its fetch requests wait up to 1.5 s at the broker for data. A partition left out of the request
# in flight (its earlier records were still buffered) then waits for the other partitions' data, up to 1.5 s:
# a fetch request that comes back sooner costs little.
FETCH_MAX_WAIT_MS = 30


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, with fetch requests that wait at most FETCH_MAX_WAIT_MS at the broker."""

    def _create_worker_consumer(self, transport):  # type: ignore[no-untyped-def]
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """faust's consumer with four changes for latency and throughput (faust-streaming 0.15.3, pinned):

    - it waits for a stream buffer to drain, not a fixed second, before fetching again;
    - its fetch requests wait at most FETCH_MAX_WAIT_MS at the broker;
    - the records a rebalance dropped are read again on a partition without a committed offset too
      (:meth:`seek_to_committed`);
    - its delivery loop has fewer lookups per message. Each delivery still races a rebalance, as faust's
      does: a delivery that waits for a full stream buffer while a rebalance suspends the streams would
      block the fetcher, and with it the changelog reads of the table recovery (a worker failing over to
      an empty data directory then waited forever: "No event received for active tp since recovery").
      Delivering with one await whenever nothing could make it wait was tried on 2026-11-30 (+20% events/s):
      a worker failing over to an empty RocksDB data directory then stopped consuming after its recovery in
      2 of 4 runs of the failover chaos test (0 of 5 with the race), so the race stays for every message.
      Racing each fetch's delivery as a whole instead (2026-12-03: +45% events/s in 3 A/B pairs) left the
      surviving worker of the join-kill chaos test stalled after its recovery in 1 of 6 runs, and in 8 of 20
      when tried again after a harness fix; taken out too. The likely cause (a seek while a fetch is pending in
      the consumer thread) and a lock that stopped it are in docs/performance.md.
    """

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition to its committed offset, and a stream partition without one to its
        beginning (the ``earliest`` policy).

        faust drops records it had fetched when a rebalance stops the flow, relying on this seek to read them
        again. aiokafka leaves a partition without a committed offset where its fetch position is, past the
        dropped records: a worker that took over partitions from one killed before its first commit then lost
        them (its sequences missed the events, and nothing answered them). Replays are harmless: the sequence
        table's offsets make applying an event idempotent. Changelog partitions are left to the table recovery.
        """
        committed = await super().seek_to_committed()
        changelogs = self.app.tables.changelog_topics
        uncommitted = [
            tp for tp, offset in committed.items() if (not offset or offset < 0) and tp.topic not in changelogs
        ]
        if uncommitted:
            await self._thread.seek_to_beginning(*uncommitted)
            logger.info(
                "no committed offset for %s: read from the beginning", sorted(f"{t}[{p}]" for t, p in uncommitted)
            )
        return committed

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    _room: asyncio.Event | None = None

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        if self._room is not None:
            self._room.set()

    async def _wait_next_records(self, timeout: float):  # type: ignore[override]
        if not self.flow_active:
            await self.wait(self.can_resume_flow)  # type: ignore[arg-type]
        try:
            self.not_waiting_next_records.set()
            active = None if self.app.client_only else self._get_active_partitions()
            if self.app.client_only or active:
                return await self._getmany(active_partitions=active, timeout=timeout), active
            if self._room is None:
                self._room = asyncio.Event()
            self._room.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._room.wait(), RESUME_CHECK_SECONDS)
            return {}, active
        finally:
            self.not_waiting_next_records.set()

    async def _drain_messages(self, fetcher):  # type: ignore[no-untyped-def]  # pragma: no cover - the live path
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        suspend_flow = self.suspend_flow
        wait_first = self.wait_first
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                messages = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in messages:
                        since_yield += 1
                        if since_yield > 100:
                            await asyncio.sleep(0)
                            since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is not None and offset < r_offset:
                            continue
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await wait_first(callback(message), suspend_flow.wait())
                        set_read_offset(tp, offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

"""faust's Kafka consumer, tuned for latency: no 1 s pause after a full stream buffer, no 1.5 s fetch waits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

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
# A seek to the committed offsets waits for the fetch pending in the consumer thread (a seek while a fetch is
# pending left the taken-over partitions unfetched, see Consumer); during a rebalance fetches wait at most this long.
REBALANCE_FETCH_SECONDS = 0.05

Sink = Callable[[Message], Awaitable[None]]


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, with fetch requests that wait at most FETCH_MAX_WAIT_MS at the broker."""

    def _create_worker_consumer(self, transport):  # type: ignore[no-untyped-def]
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """faust's consumer with six changes for latency and throughput (faust-streaming 0.15.3, pinned):

    - it waits for a stream buffer to drain, not a fixed second, before fetching again;
    - its fetch requests wait at most FETCH_MAX_WAIT_MS at the broker;
    - the records a rebalance dropped are read again on a partition without a committed offset too
      (:meth:`seek_to_committed`);
    - a seek to the committed offsets never runs while a fetch is pending in the consumer thread (one lock),
      and during a rebalance fetches wait at most REBALANCE_FETCH_SECONDS. faust's recovery resumes the stream
      partitions and then seeks them; a seek that arrived while a fetch was pending left the Kafka client
      returning nothing more for the taken-over partitions (the survivor of the join-kill chaos test then
      stalled, watchdog exit 70);
    - it races the delivery of each fetch as a whole against a rebalance, not each message (two tasks per
      fetch instead of four per message; 2026-12-03, three A/B pairs: +24% events/s micro-batched, +59% at the
      no-op ceiling). The race keeps a delivery that waits for a full stream buffer, while a rebalance suspends
      the streams, from blocking the fetcher and with it the table recovery's changelog reads; a rebalance
      cancels the rest of the fetch, whose records are read again from the committed offsets (the sequence
      table's offsets make a replay harmless). Without the lock this delivery stalled the join-kill survivor in
      8 of 20 runs; with it, in none of 34 (nor failover-rocksdb in 34; docs/performance.md). Delivering with
      one await and no race (2026-11-30) stalled the failover test the same way and was taken out;
    - the records of a topic with a sink (:meth:`delivering`; the worker's events topic, ``streams.intake``)
      go to that sink, not through faust's conductor and streams.
    """

    sinks: Mapping[str, Sink] = {}  # topic -> what takes its records instead of faust's streams (see delivering)

    @classmethod
    def delivering(cls, sinks: Mapping[str, Sink]) -> type[Consumer]:
        """This consumer, handing the records of each topic in ``sinks`` to its sink (in fetch order, one
        awaited call per record) instead of to faust's conductor and streams."""
        return type(cls.__name__, (cls,), {"sinks": dict(sinks)})

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition to its committed offset, and a stream partition without one to its
        beginning (the ``earliest`` policy).

        faust drops records it had fetched when a rebalance stops the flow, relying on this seek to read them
        again. aiokafka leaves a partition without a committed offset where its fetch position is, past the
        dropped records: a worker that took over partitions from one killed before its first commit then lost
        them (its sequences missed the events, and nothing answered them). Replays are harmless: the sequence
        table's offsets make applying an event idempotent. Changelog partitions are left to the table recovery.
        """
        async with self._fetch_lock():
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
    _fetching: asyncio.Lock | None = None

    def _fetch_lock(self) -> asyncio.Lock:
        """Held while a fetch is pending in the consumer thread and while seeking to the committed offsets."""
        if self._fetching is None:
            self._fetching = asyncio.Lock()
        return self._fetching

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
                if self.app.rebalancing:  # a seek may come: keep the fetch it would wait for short
                    timeout = min(timeout, REBALANCE_FETCH_SECONDS)
                async with self._fetch_lock():
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
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        suspend_flow = self.suspend_flow
        wait_first = self.wait_first
        commit_every = self._commit_every
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                messages = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    first = await anext(messages, None)  # the fetch, outside the race
                    if first is not None:
                        await wait_first(self._deliver(first, messages), suspend_flow.wait())
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

    async def _deliver(self, first, messages) -> None:  # type: ignore[no-untyped-def]  # pragma: no cover
        """Hand one fetch's messages to the streams, in order; raced as a whole against a rebalance."""
        callback = self.callback
        sinks = self.sinks
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        tp, message = first
        while True:
            offset = message.offset
            r_offset = get_read_offset(tp)
            if r_offset is None or offset >= r_offset:
                if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                    await self._add_gap(tp, r_offset + 1, offset)
                sink = sinks.get(message.topic)
                await (callback(message) if sink is None else sink(message))
                set_read_offset(tp, offset)
            since_yield += 1
            if since_yield >= 100:
                await asyncio.sleep(0)
                since_yield = 0
            item = await anext(messages, None)
            if item is None:
                return
            tp, message = item

"""The events topic's records, from the consumer straight into the agent's batcher (no faust stream per record)."""

from __future__ import annotations

import asyncio
from typing import Protocol

import faust
from faust.types import Message


class Buffer(Protocol):
    async def put(self, item: Message) -> None: ...


class Intake:
    """What :class:`streams.consumer.Consumer` calls with each fetched record of the events topic.

    faust hands a record to an agent through its conductor (an event built and queued per record), its
    stream (a generator step, its monitor's statistics) and the agent's iteration of it: about a third of the
    event loop's time at the pipeline ceiling (docs/performance.md). The intake does what those steps do that
    the worker relies on, once per record and without a queue between:

    - a record fetched under an older consumer generation, or while a rebalance has stopped the flow, is
      acknowledged unprocessed, as faust's stream does (the pipeline reads such gaps again, see
      ``Pipeline.ingest``);
    - any other record is tracked as unacknowledged (a rebalance and a shutdown wait for it) and its message
      put into the agent's buffer, waiting while the buffer is full: backpressure on the fetcher. The publisher
      acknowledges it after publishing with the message's own ``ack`` (what faust's ``Event.ack`` calls; with no
      reference counted, the first ack is the final one). No faust ``Event`` is built per record: the agent
      builds one per partition group, for faust's table context (4% of the event loop at the ceiling).

    faust's conductor also waits, per record, for its producer buffer to drain: the worker writes its table and
    publishes through its own bulk senders (``streams.table_writer``, ``streams.bulk_send``), never that buffer,
    so the intake does not (the check cost 4% of the event loop at the ceiling).

    Until the agent attaches its buffer, records wait here, so none takes another path and overtakes it.
    """

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._buffer: Buffer | None = None
        self._attached = asyncio.Event()

    def attach(self, buffer: Buffer) -> None:
        self._buffer = buffer
        self._attached.set()

    def detach(self) -> None:
        self._attached.clear()
        self._buffer = None

    async def __call__(self, message: Message) -> None:
        while self._buffer is None:
            await self._attached.wait()
        app = self._app
        consumer = app.consumer
        if not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id:
            consumer.ack(message)
            return
        message.tracked = True
        consumer.unacked.add(message)
        await self._buffer.put(message)

"""The Faust agent: batches of the events topic's messages become plain records for the pipeline, then the publisher."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager

import faust
from faust import streams as faust_streams
from faust.events import Event
from faust.types import EventT, Message
from faust.types.transports import ConsumerT

from streams.batcher import Batcher
from streams.intake import Intake
from streams.pipeline import Batch, Pipeline
from streams.publisher import Publisher
from streams.source import Source

Fatal = Callable[[str, BaseException], None]


def source_of(message: Message) -> Source:
    """Where a Kafka message came from."""
    return Source(message.topic, message.partition, message.offset, message.key, message.timestamp)


@contextmanager
def event_context(event: EventT) -> Iterator[None]:
    """Make ``event`` faust's current event: table reads and writes go to its partition (store and changelog)."""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def by_partition(messages: Sequence[Message]) -> list[list[Message]]:
    """The messages grouped by topic partition, each group in arrival (offset) order."""
    groups: dict[tuple[str, int], list[Message]] = {}
    for message in messages:
        groups.setdefault((message.topic, message.partition), []).append(message)
    return list(groups.values())


def acknowledge(messages: Sequence[Message], consumer: ConsumerT) -> Callable[[], None]:
    """A function that marks ``messages`` done for faust (their offsets may then be committed): what faust's
    ``Event.ack`` does, without an event per message."""

    def ack() -> None:
        for message in messages:
            message.ack(consumer)

    return ack


async def _messages(stream: faust.Stream) -> AsyncIterator[Message]:
    """The messages of the stream's events (faust's ``events()`` without its extra generator hop per event)."""
    async for _ in stream:
        event = stream.current_event
        if event is not None:
            yield event.message


def recommend_agent(
    pipeline: Pipeline,
    make_publisher: Callable[[Batcher], Publisher],
    make_batcher: Callable[[], Batcher],
    fatal: Fatal,
    intake: Intake,
) -> Callable[[faust.Stream], object]:
    """The agent function: the events topic's messages come into a :class:`Batcher` (from ``intake``, which the
    consumer hands the topic's records to, or from the stream); whenever the :class:`Publisher` has room,
    ingest every waiting event as a batch on the event loop and hand it over. The publisher scores,
    publishes and only then acknowledges the batch (events are read without acknowledgement, ``noack``).

    Nothing may escape: under faust the exception would vanish and the agent hang while the process lives
    on. ``fatal`` is called instead (the worker exits non-zero).
    """

    async def recommend(stream: faust.Stream) -> None:
        batcher = make_batcher()
        publisher = make_publisher(batcher)
        # The consumer hands the events topic's records to the intake; iterating the stream subscribes the
        # topic (and carries whatever is put into it directly, as in faust's test context).
        intake.attach(batcher)
        reader = asyncio.ensure_future(batcher.read(_messages(stream.noack())))
        app = stream.app
        try:
            while True:
                await publisher.reserve(batcher.has_full_batch)
                messages = await batcher.next_batch()  # everything that waited meanwhile, up to the cap
                if not messages:
                    return  # the stream ended: the worker is stopping
                batch = Batch(started=time.perf_counter())
                for group in by_partition(messages):
                    first = group[0]
                    with event_context(Event(app, first.key, first.value, first.headers, first)):
                        batch.merge(await pipeline.ingest([(source_of(m), m.value) for m in group]))
                publisher.submit(batch, acknowledge(messages, app.consumer))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            fatal("the recommend agent failed", exc)
            raise
        finally:
            intake.detach()
            reader.cancel()
            await publisher.close()

    return recommend

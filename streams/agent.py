"""The Faust agent: turns faust's events into plain records for the pipeline, and batches into calls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import faust
from faust.streams import current_event

from streams.pipeline import Outcome, Pipeline
from streams.source import Source

Fatal = Callable[[str, BaseException], None]


def current_source() -> Source:
    """The Kafka record faust is handing to the stream's processors right now."""
    message = current_event().message  # type: ignore[union-attr]
    return Source(message.topic, message.partition, message.offset, message.key, message.timestamp)


def recommend_agent(
    pipeline: Pipeline,
    max_batch: int,
    max_wait: float,
    fatal: Fatal,
    drain: Callable[[], Awaitable[None]] | None = None,
) -> Callable[[faust.Stream], Awaitable[None]]:
    """The agent function: ingest each event as it arrives, publish micro-batches.

    Nothing may escape either step: under ``stream.take()`` faust would swallow the exception and the agent
    would hang while the process lives on. ``fatal`` is called instead (the worker exits non-zero).

    Args:
        drain: awaited after each batch, before faust acknowledges its events.
    """

    async def ingest(raw: bytes | None) -> list[Outcome]:
        source = current_source()
        try:
            return await pipeline.ingest(source, raw)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            fatal(f"handling {source.topic}[{source.partition}]@{source.offset} failed", exc)
            raise

    async def recommend(stream: faust.Stream) -> None:
        stream.add_processor(ingest)
        try:
            async for batch in stream.take(max_batch, within=max_wait):
                await pipeline.publish_batch([outcome for handled in batch for outcome in handled])
                if drain is not None:
                    await drain()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            fatal("the recommend agent failed", exc)
            raise

    return recommend

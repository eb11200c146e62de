"""The dead-letter path: every refused event written to `events-dlq` with a reason, and confirmed there."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter

from streams.records import InvalidEvent, dead_letter, dead_letter_key
from streams.source import Source

logger = logging.getLogger(__name__)

# send(key, value) hands a record to the producer; what it returns, when awaitable, completes on delivery.
Send = Callable[[bytes, bytes], Awaitable[object]]

RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)  # then every 5 s until the dead letter is written


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event sent to the dead-letter topic; ``delivered`` completes when the broker has it."""

    source: Source
    key: bytes
    record: bytes
    delivered: object


class DeadLetters:
    """Writes dead letters (counted by reason) and waits until the broker has them.

    Args:
        send: publishes one record to the dead-letter topic.
        refused: the ``streamrec_events_invalid_total`` counter (label: reason).
    """

    def __init__(self, send: Send, refused: Counter) -> None:
        self._send = send
        self._refused = refused

    async def send(self, source: Source, raw: bytes | None, error: InvalidEvent) -> DeadLetter:
        """Hand the dead letter of ``raw`` to the producer; never raises (a refusal is retried by :meth:`confirm`)."""
        self._refused.labels(error.reason).inc()
        logger.warning("dead-lettered %s[%d]@%d: %s", source.topic, source.partition, source.offset, error)
        record = dead_letter(raw, source.key, error, source.topic, source.partition, source.offset, time.time())
        key = dead_letter_key(source.key)
        return DeadLetter(source, key, record, await self._hand_over(key, record))

    async def confirm(self, letter: DeadLetter) -> None:
        """Wait until a dead letter is on the broker; re-send it (after a pause) for as long as that fails."""
        attempt = 0
        delivered = letter.delivered
        while True:
            try:
                if inspect.isawaitable(delivered):
                    await delivered
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the producer gave up on it (e.g. the broker was away too long)
                pause = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                where = f"{letter.source.topic}[{letter.source.partition}]@{letter.source.offset}"
                logger.warning(
                    "dead letter of %s not written (%s: %s); retrying in %.1fs",
                    where,
                    exc.__class__.__name__,
                    exc,
                    pause,
                )
                attempt += 1
                await asyncio.sleep(pause)
                delivered = await self._hand_over(letter.key, letter.record)

    async def _hand_over(self, key: bytes, record: bytes) -> object:
        """Give a dead letter to the producer; a refusal becomes a failed delivery, which is retried."""
        try:
            return await self._send(key, record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

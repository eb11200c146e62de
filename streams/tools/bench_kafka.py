"""The benchmark's own Kafka clients: a paced event sender and a recommendation collector, both on aiokafka.

They share the two cores of the development machine with the worker and the broker, so they are kept lean:
kafka-python's pure-Python record handling cost the benchmark 187 us of CPU per event sent (30% of a core at
1,800 events/s, and it still fell behind its schedule) and about half a core to read 7,000 records/s.
`streamrec produce` keeps kafka-python; these clients serve the measurement only.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.bulk_send import BulkSender

# A paced sender hands the producer every event due since its last hand-over at once, about this often; each is
# stamped when it is handed over, so the latency is still measured from its own send.
_TICK_S = 0.001
_CHUNK = 4096  # events per hand-over when not paced


def send_events(bootstrap: str, topic: str, events: Iterable[dict], rate: float = 0.0) -> float:
    """Send ``events`` keyed by user id, each stamped ``ts`` = its send time; ``rate`` events/s (0: at once).
    ``topic`` must exist (the benchmark creates each worker's topics before it sends).

    Returns:
        The events/s achieved (from the first send to the last), which a slow sender can leave below ``rate``.
    """
    return asyncio.run(_send(bootstrap, topic, list(events), rate))


async def _send(bootstrap: str, topic: str, events: list[dict], rate: float) -> float:
    """The events due at each tick go to the producer as one batch per partition (``streams.bulk_send``, keyed as
    the Java client and aiokafka's ``send`` key them): a record costs an encode and an append, not a coroutine
    and a future. One ``send`` per event took 97 us of CPU, as much as the worker spends on an event, on the
    same two cores."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        linger_ms=5,
        acks=1,
        max_batch_size=256 * 1024,
        client_id="streamrec-bench",
    )
    await producer.start()
    send = BulkSender(lambda: producer, topic)
    failures: list[BaseException] = []

    def check(future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            failures.append(future.exception())  # type: ignore[arg-type]

    loop = asyncio.get_running_loop()
    sent = 0
    started = last = loop.time()
    try:
        while sent < len(events):
            if rate > 0:
                ahead = started + sent / rate - loop.time()  # until the next event is due
                if ahead > 0:
                    await asyncio.sleep(max(ahead, _TICK_S))
                due = min(len(events), int((loop.time() - started) * rate) + 1)
            else:
                due = min(len(events), sent + _CHUNK)
            now = time.time()
            records = [(str(e["user_id"]).encode(), orjson.dumps({**e, "ts": now})) for e in events[sent:due]]
            for delivery in await send(records):
                delivery.add_done_callback(check)
            sent = due
            last = loop.time()
            await asyncio.sleep(0)  # a sender behind its schedule still lets the producer's requests out
        await producer.flush()
    finally:
        await producer.stop()
    if failures:
        raise RuntimeError(f"{len(failures)} batches of the {sent} events could not be sent to {topic}: {failures[0]}")
    return sent / max(last - started, 1e-9)


class Collector:
    """Reads recommendation records in a background thread; tells when given events have been answered.

    It keeps four fields of each record as a plain tuple, not the decoded record: tuples of strings and floats
    are outside the garbage collector's sight, so its full collections stay short as answers pile up. (Keeping
    the decoded records made this process stop for 100-190 ms every few seconds while it paced the load, and
    the events it held back then showed up as the worker's latency tail.)
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.received: list[tuple[str, str, float, float]] = []  # user, trigger event, event ts, produced ts
        self._wanted: dict[str, str] = {}  # user -> the event whose answer is awaited
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._bootstrap, self._topic = bootstrap, topic
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-collector")
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError(f"could not start reading {topic} from {bootstrap} within 60 s")
        if self._error is not None:
            raise RuntimeError(f"could not read {topic} from {bootstrap}: {self._error}")

    def close(self) -> None:
        """Stop reading (within about 0.2 s)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as exc:  # wait_for reports it
            self._error = exc
            self._ready.set()

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap.split(","),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            client_id="streamrec-bench",
            # fewer, larger fetches: the latency is read from each record's produced_ts, not from when it is read
            fetch_min_bytes=256 * 1024,
            fetch_max_wait_ms=200,
        )
        await consumer.start()
        self._ready.set()
        try:
            while not self._stop.is_set():
                for messages in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                    self._take([self._fields(m.value) for m in messages])
        finally:
            await consumer.stop()

    @staticmethod
    def _fields(value: bytes) -> tuple[str, str, float, float]:
        record = orjson.loads(value)
        return record["user_id"], record["trigger_event_id"], record["event_ts"], record["produced_ts"]

    def _take(self, answers: list[tuple[str, str, float, float]]) -> None:
        with self._lock:
            self.received.extend(answers)
            wanted = self._wanted
            if not wanted:
                return
            for user, trigger, _, _ in answers:
                if wanted.get(user) == trigger:
                    del wanted[user]
            if not wanted:
                self._done.set()

    def wait_for(self, events: list[dict], timeout: float) -> list[dict]:
        """Block until each user's last event in ``events`` has been answered; return the answers to ``events``
        (``user_id``, ``trigger_event_id``, ``event_ts``, ``produced_ts``)."""
        ids = {e["event_id"] for e in events}
        with self._lock:
            self._done.clear()
            self._wanted = {e["user_id"]: e["event_id"] for e in events}
            for user, trigger, _, _ in self.received:  # some may be in already
                if self._wanted.get(user) == trigger:
                    del self._wanted[user]
            if not self._wanted:
                self._done.set()
        deadline = time.monotonic() + timeout
        while not self._done.wait(1.0):
            if self._error is not None:
                raise RuntimeError(f"reading the recommendations failed: {self._error}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every event was answered within {timeout:.0f}s")
        with self._lock:
            fields = ("user_id", "trigger_event_id", "event_ts", "produced_ts")
            return [dict(zip(fields, answer)) for answer in self.received if answer[1] in ids]

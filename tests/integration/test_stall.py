"""A worker whose agent hangs or dies exits non-zero with the cause, instead of living on doing nothing."""

from __future__ import annotations

import sys
import time

import pytest

from streams.tools.kafka_io import Feeder
from streams.tools.worker_process import WorkerProcess
from tests.fakes import event

pytestmark = pytest.mark.kafka

# The fault is injected by the test into a real worker process: the batch step of the pipeline hangs or
# raises. Everything else (faust, the broker, the watchdog, the exit) is the real thing.
FAULTY_WORKER = """
import asyncio, sys
from streams import pipeline

async def hang(self, batch, engine, results):
    await asyncio.Event().wait()

async def boom(self, batch, engine, results):
    raise RuntimeError("injected failure")

pipeline.Pipeline.publish = {"hang": hang, "raise": boom}[sys.argv[1]]
from streams.tools.cli import main
sys.exit(main(["worker"]))
"""


@pytest.mark.parametrize("fault, cause", [("hang", "stalled: no progress"), ("raise", "publishing a batch failed")])
def test_a_stuck_or_dead_agent_ends_the_process_with_the_cause(kafka, model_root, tmp_path, fault, cause):
    worker = WorkerProcess.isolated(kafka, model_root, tmp_path, stall_timeout=4)
    worker.argv = [sys.executable, "-c", FAULTY_WORKER, fault]
    worker.start()
    feeder = Feeder(
        kafka,
        worker.settings.events_topic,
        [(f"u{n % 7}".encode(), event(f"u{n % 7}", f"i{n}")) for n in range(400)],
        rate=40,
    ).start()
    try:
        deadline = time.monotonic() + 90
        while worker.alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not worker.alive(), f"the worker lived on:\n{worker.tail()}"
        assert worker.returncode() == 70, worker.tail()
        log = worker.log()
        assert cause in log, log[-3000:]
        if fault == "raise":
            assert "RuntimeError: injected failure" in log
    finally:
        feeder.close()
        worker.stop()


def test_sigterm_ends_a_worker_whose_agent_hangs(kafka, model_root, tmp_path):
    worker = WorkerProcess.isolated(kafka, model_root, tmp_path, stall_timeout=0, shutdown_timeout=3)
    worker.argv = [sys.executable, "-c", FAULTY_WORKER, "hang"]
    worker.start()
    feeder = Feeder(kafka, worker.settings.events_topic, [(b"u1", event("u1", "i1"))], rate=0).start()
    feeder.join()
    try:
        deadline = time.monotonic() + 60
        while "streamrec_batch_size" not in worker.metrics() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # the batch is hanging now
        started = time.monotonic()
        code = worker.stop(timeout=30)
        assert not worker.forced, f"SIGTERM did not end the worker:\n{worker.tail()}"
        assert time.monotonic() - started < 10 and code in (0, 143), (code, worker.tail())
    finally:
        feeder.close()
        worker.stop()

"""Shared fixtures: the real local Kafka broker, a trained model, and worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

# imported here, early: when hypothesis' own pytest hook first imports it at the end of a run that did not,
# Python 3.11.7 fails to compile it ("AST constructor recursion depth mismatch") and pytest exits 1
import hypothesis  # noqa: F401
import pytest

from streams.tools.models import train
from streams.tools.worker_process import WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BOOTSTRAP = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"


@pytest.fixture(scope="session")
def kafka() -> str:
    """Bootstrap address of the real broker, started by deploy/local/kafka.sh if it is not running."""
    subprocess.run(["bash", str(ROOT / "deploy/local/kafka.sh"), "start"], check=True, cwd=ROOT)
    return BOOTSTRAP


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A small simulated event log (events.jsonl, items.jsonl)."""
    from streams.tools.simulate import simulate, write_dataset

    out = tmp_path_factory.mktemp("data")
    events, items = simulate(120, 150, 25, 11)
    write_dataset(out, events, items)
    return out


@pytest.fixture(scope="session")
def model_root(tmp_path_factory, dataset) -> Path:
    """A model root holding one SASRec version trained (tiny, CPU) on the simulated log."""
    root = tmp_path_factory.mktemp("models")
    train(
        dataset / "events.jsonl", dataset / "items.jsonl", root, "--epochs", "3", "--no-text", "--seed", "1", cwd=ROOT
    )
    return root


@pytest.fixture(scope="session")
def text_model_root(tmp_path_factory, dataset) -> Path:
    """A model root holding one version trained with item text: it ships the text encoder (new items' rows)."""
    root = tmp_path_factory.mktemp("text-models")
    train(dataset / "events.jsonl", dataset / "items.jsonl", root, "--epochs", "3", "--text", "--seed", "1", cwd=ROOT)
    return root


def model_version(root: Path) -> str:
    version = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())[-1]
    return json.loads((version / "manifest.json").read_text())["model_version"]


@pytest.fixture()
def start_worker(kafka, tmp_path):
    """Factory: start_worker(model_dir, **settings) -> a running WorkerProcess; all are stopped afterwards."""
    workers: list[WorkerProcess] = []

    def start(model_dir: Path, **settings: str) -> WorkerProcess:
        worker = WorkerProcess.isolated(
            kafka, model_dir, tmp_path, prefix="streamrec-test", **{"partitions": 2, **settings}
        ).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
        worker.delete_topics()  # a developer's broker would otherwise keep every test's topics
        # captured by pytest and shown only when the test fails: the worker's own account of it
        print(f"--- {worker.log_path.name} (last 80 lines) ---\n{worker.tail(80)}")


def wait_until(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

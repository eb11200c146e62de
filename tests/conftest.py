"""Shared fixtures: the real local Kafka broker, a trained model, and worker processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BOOTSTRAP = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def kafka() -> str:
    """Bootstrap address of the real broker, started by deploy/local/kafka.sh if it is not running."""
    subprocess.run(["bash", str(ROOT / "deploy/local/kafka.sh"), "start"], check=True, cwd=ROOT)
    return BOOTSTRAP


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A small simulated event log (events.jsonl, items.jsonl)."""
    from streams.simulate import simulate, write_dataset

    out = tmp_path_factory.mktemp("data")
    events, items = simulate(120, 150, 25, 11)
    write_dataset(out, events, items)
    return out


@pytest.fixture(scope="session")
def model_root(tmp_path_factory, dataset) -> Path:
    """A model root holding one SASRec version trained (tiny, CPU) on the simulated log."""
    root = tmp_path_factory.mktemp("models")
    subprocess.run(
        [sys.executable, "-m", "encoders", "train", "--events", str(dataset / "events.jsonl"),
         "--items", str(dataset / "items.jsonl"), "--out", str(root), "--epochs", "3", "--no-text", "--seed", "1"],
        check=True, cwd=ROOT,
    )
    return root


def model_version(root: Path) -> str:
    version = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())[-1]
    return json.loads((version / "manifest.json").read_text())["model_version"]


class Worker:
    """A `streamrec worker` subprocess with its own topics, app id and metrics port."""

    def __init__(self, bootstrap: str, model_dir: Path, log_dir: Path, **settings: str) -> None:
        run = uuid.uuid4().hex[:8]
        self.events = f"events-{run}"
        self.recommendations = f"recommendations-{run}"
        self.dlq = f"events-dlq-{run}"
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "STREAMREC_KAFKA_BOOTSTRAP": bootstrap,
            "STREAMREC_APP_ID": f"streamrec-test-{run}",
            "STREAMREC_EVENTS_TOPIC": self.events,
            "STREAMREC_RECOMMENDATIONS_TOPIC": self.recommendations,
            "STREAMREC_DLQ_TOPIC": self.dlq,
            "STREAMREC_MODEL_DIR": str(model_dir),
            "STREAMREC_METRICS_PORT": str(self.metrics_port),
            "STREAMREC_DATA_DIR": str(log_dir / f"faust-{run}"),
            "STREAMREC_PARTITIONS": "2",
            **{f"STREAMREC_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.log_path = log_dir / f"worker-{run}.log"
        self.bootstrap = bootstrap
        self.proc: subprocess.Popen | None = None
        self.killed = False  # True when a graceful stop took too long and SIGKILL was needed

    def start(self) -> "Worker":
        from streams.app import ensure_worker_topics
        from streams.settings import Settings

        # the worker's topics exist before any test client touches them (no broker auto-creation)
        ensure_worker_topics(Settings.for_env(self.env))
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "streams", "worker"], cwd=ROOT, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        """The worker's metrics exposition ("" while its endpoint is not up yet)."""
        from urllib.error import URLError
        from urllib.request import urlopen

        self.assert_alive()
        try:
            with urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
                return response.read().decode()
        except (URLError, ConnectionError):
            return ""

    def assert_alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"worker exited:\n{self.log()[-3000:]}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def tail(self, lines: int = 30) -> str:
        """The end of the worker's log, for failure messages."""
        return "\n".join(self.log().splitlines()[-lines:])


@pytest.fixture()
def start_worker(kafka, tmp_path):
    """Factory: start_worker(model_dir, **settings) -> a running Worker; all are stopped afterwards."""
    workers: list[Worker] = []

    def start(model_dir: Path, **settings: str) -> Worker:
        worker = Worker(kafka, model_dir, tmp_path, **settings).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, value = line.rsplit(" ", 1)
        metric = head.split("{", 1)[0]
        if metric != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def wait_until(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

"""Start, stop and kill `streamrec worker` processes: one helper for the demo, the benchmark, chaos and tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from streams.app import ensure_worker_topics
from streams.kafka_admin import delete_topics
from streams.settings import PREFIX, Settings
from streams.tools.local_kafka import REPO


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_settings(**settings: object) -> dict[str, str]:
    """``{"max_batch": 8}`` -> ``{"STREAMREC_MAX_BATCH": "8"}``."""
    return {f"{PREFIX}{name.upper()}": str(value) for name, value in settings.items()}


class WorkerProcess:
    """One `streamrec worker` subprocess with its environment, log file and metrics port.

    Args:
        env: the full environment of the process (the worker reads its STREAMREC_* settings from it).
        log_path: where its stdout and stderr go (appended: a restart keeps the earlier lines).
    """

    def __init__(self, env: Mapping[str, str], log_path: Path, argv: list[str] | None = None) -> None:
        self.env = dict(env)
        self.argv = argv or [sys.executable, "-m", "streams", "worker"]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.forced = False  # True when stop() had to SIGKILL

    @classmethod
    def isolated(
        cls, bootstrap: str, model_dir: Path, workdir: Path, prefix: str = "streamrec", **settings: object
    ) -> WorkerProcess:
        """A worker with topics, app id, data directory and metrics port of its own (``settings`` override)."""
        run = f"{prefix}-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            **env_settings(
                kafka_bootstrap=bootstrap,
                app_id=run,
                events_topic=f"{run}-events",
                recommendations_topic=f"{run}-recommendations",
                dlq_topic=f"{run}-events-dlq",
                grades_topic=f"{run}-grades",
                items_topic=f"{run}-items",
                model_dir=model_dir,
                data_dir=workdir / f"{run}-data",
                metrics_port=free_port(),
            ),
            **env_settings(**settings),
        }
        return cls(env, workdir / f"{run}.log")

    def sibling(self, name: str, **settings: object) -> WorkerProcess:
        """Another member of the same group (same app id and topics) with its own metrics port and log."""
        env = {
            **self.env,
            **env_settings(metrics_port=free_port(), data_dir=f"{self.env[PREFIX + 'DATA_DIR']}-{name}"),
            **env_settings(**settings),
        }
        return type(self)(env, self.log_path.with_name(f"{self.log_path.stem}-{name}.log"), self.argv)

    @property
    def settings(self) -> Settings:
        return Settings.for_env(self.env)

    @property
    def metrics_port(self) -> int:
        return int(self.env[PREFIX + "METRICS_PORT"])

    @property
    def bootstrap(self) -> str:
        return self.env[PREFIX + "KAFKA_BOOTSTRAP"]

    @property
    def events(self) -> str:
        """The events topic."""
        return self.env[PREFIX + "EVENTS_TOPIC"]

    @property
    def recommendations(self) -> str:
        """The recommendations topic."""
        return self.env[PREFIX + "RECOMMENDATIONS_TOPIC"]

    @property
    def dlq(self) -> str:
        """The dead-letter topic."""
        return self.env[PREFIX + "DLQ_TOPIC"]

    def start(self, create_topics: bool = True) -> WorkerProcess:
        """Create the worker's topics if missing, then start the process (it does not wait for it to serve)."""
        if create_topics:
            ensure_worker_topics(self.settings)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.forced = False
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        """Raise AssertionError, with the end of the log, when the process has ended."""
        assert self.alive(), f"worker exited with {self.returncode()}:\n{self.tail(40)}"

    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit (what a crash or an OOM kill does)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def delete_topics(self) -> list[str]:
        """Delete this worker's topics (events, recommendations, dead letters, changelogs: all named after its app
        id) from the broker; for an :meth:`isolated` worker whose run is over. Returns the names deleted."""
        settings = self.settings
        return delete_topics(settings.kafka_bootstrap, f"{settings.app_id}-")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL after ``timeout`` seconds. Returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.forced = True
                self.proc.kill()
                self.proc.wait()
        return self.returncode()

    def metrics(self, timeout: float = 5.0) -> str:
        """The worker's /metrics text ("" while the endpoint is not up)."""
        try:
            with urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=timeout) as response:
                return response.read().decode()
        except (URLError, ConnectionError, TimeoutError):
            return ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        """The end of the log, for error messages."""
        return "\n".join(self.log().splitlines()[-lines:])


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``, in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, value = line.rsplit(" ", 1)
        if head.split("{", 1)[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total

"""The README's first command, run for real (smaller): Kafka, simulate, train, worker, replay, report."""

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.kafka


def test_demo_runs_end_to_end(kafka, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            "demo",
            "--users",
            "120",
            "--items",
            "150",
            "--replay",
            "600",
            "--rate",
            "600",
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "STREAMREC_METRICS_PORT": "0"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    records = re.search(r"recommendation records: (\d+) for (\d+)/(\d+) users", output)
    assert records, output[-3000:]
    assert int(records.group(2)) == int(records.group(3)) > 0
    latency = re.search(r"latency: p50 ([\d.]+) ms, p99 ([\d.]+) ms", output)
    assert latency and 0 < float(latency.group(1)) <= float(latency.group(2))
    assert "demo complete" in output
    assert list((tmp_path / "models").iterdir()), "the demo trained and exported a model"

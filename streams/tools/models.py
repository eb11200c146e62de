"""The model a tool runs with: the configured one when there is one, else a small one trained on the spot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serving.artifact import ArtifactError, resolve_version


def find_or_train(
    model_dir: Path, work: Path, users: int, items: int, events_per_user: int = 30, epochs: int = 1, why: str = ""
) -> Path:
    """A version folder: from ``model_dir``, else from ``work/models``, else trained there on simulated data."""
    for root in (model_dir, work / "models"):
        try:
            return resolve_version(root)
        except ArtifactError:
            pass
    from streams.tools.simulate import simulate, write_dataset

    print(f"no model in {model_dir}: training one on simulated data ({users} users, {items} items){why}", flush=True)
    events, catalog = simulate(users, items, events_per_user, 3)
    write_dataset(work / "data", events, catalog)
    train(work / "data" / "events.jsonl", None, work / "models", "--epochs", str(epochs), "--no-text")
    return resolve_version(work / "models")


def train(events: Path, items: Path | None, out: Path, *flags: str, cwd: Path | None = None) -> None:
    """`streamrec train` in a child process (torch stays out of this one); raises when it fails."""
    command = [sys.executable, "-m", "encoders", "train", "--events", str(events), "--out", str(out)]
    if items is not None:
        command += ["--items", str(items)]
    subprocess.run([*command, *flags], check=True, cwd=cwd)

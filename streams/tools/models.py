"""The model a tool runs with: the configured one when there is one, else a small one trained on the spot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serving.artifact import ArtifactError, resolve_version


def find_or_train(model_dir: Path, work: Path, users: int, items: int, events_per_user: int = 30,
                  epochs: int = 1, why: str = "") -> Path:
    """A version folder: from ``model_dir``, else from ``work/models``, else trained there on simulated data."""
    for root in (model_dir, work / "models"):
        try:
            return resolve_version(root)
        except ArtifactError:
            pass
    from streams.simulate import simulate, write_dataset

    print(f"no model in {model_dir}: training one on simulated data ({users} users, {items} items){why}",
          flush=True)
    events, catalog = simulate(users, items, events_per_user, 3)
    write_dataset(work / "data", events, catalog)
    subprocess.run([sys.executable, "-m", "encoders", "train", "--events", str(work / "data" / "events.jsonl"),
                    "--out", str(work / "models"), "--epochs", str(epochs), "--no-text"], check=True)
    return resolve_version(work / "models")

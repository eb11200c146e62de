"""Writing a model version into a model root: a hidden folder, a checked manifest, then one atomic rename."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.artifact import FORMAT_VERSION, MANIFEST, MODEL_FILE, ArtifactError, load_artifact, sha256_of

logger = logging.getLogger(__name__)


def version_name(onnx_sha256: str, now: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ-<first 6 hex of model.onnx's sha256>``: names sort by time."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{onnx_sha256[:6]}"


def new_tmp_dir(model_root: str | Path) -> Path:
    """A fresh hidden ``.tmp-<stamp>-<pid>`` folder in the model root (workers skip hidden folders)."""
    root = Path(model_root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def publish(tmp_dir: Path, manifest: dict[str, Any]) -> Path:
    """Hash the files of ``tmp_dir``, write the manifest, check the folder with the worker's reader, rename it.

    ``tmp_dir`` must live in the model root. The version name uses the current UTC second; if that folder
    already exists (the same model exported twice within a second) it waits a second.

    Returns:
        The final version folder.

    Raises:
        ArtifactError: the folder is not what a worker can load (it is removed, nothing is published).
    """
    root = tmp_dir.parent
    files = {p.name: sha256_of(p) for p in sorted(tmp_dir.iterdir()) if p.name != MANIFEST}
    if MODEL_FILE not in files:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise ArtifactError(f"{tmp_dir} has no {MODEL_FILE}: the export failed before the graph was written")
    while True:
        now = datetime.now(UTC).replace(microsecond=0)
        version = version_name(files[MODEL_FILE], now)
        if not (root / version).exists():
            break
        time.sleep(1.0)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_version": version,
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **manifest,
        "files": files,
    }
    (tmp_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    try:
        load_artifact(tmp_dir)
    except ArtifactError:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    final = root / version
    os.replace(tmp_dir, final)
    logger.info("published model version %s", final)
    return final

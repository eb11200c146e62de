"""The model being served, and the atomic switch to a newer version found in the model root."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from serving.artifact import MANIFEST, ArtifactError, list_versions, load_artifact, resolve_version
from serving.engine import Engine

logger = logging.getLogger(__name__)

SWAPPED = "swapped"
REJECTED = "rejected"
UNCHANGED = "unchanged"


def engine_loader(device: str, max_batch: int, threads: int, exclude_seen: bool) -> Callable[[Path], Engine]:
    """A function that loads, validates and warms up the engine of one version folder."""

    def load(path: Path) -> Engine:
        engine = Engine(
            load_artifact(path), device=device, max_batch=max_batch, threads=threads, exclude_seen=exclude_seen
        )
        engine.warmup()
        return engine

    return load


class ModelRegistry:
    """Holds the engine being served; :meth:`poll` switches to a newer valid version.

    Readers take ``registry.current`` once per batch, so a batch is scored by exactly one model;
    the swap is a single reference assignment, done only after the new engine is loaded and warm.
    """

    def __init__(self, model_dir: Path | str, load: Callable[[Path], Engine]) -> None:
        self._model_dir = Path(model_dir)
        self._load = load
        self._rejected: set[Path] = set()
        self.current: Engine = load(resolve_version(self._model_dir))

    @property
    def follows_root(self) -> bool:
        """True when the registry watches a model root (not one pinned version folder)."""
        return not (self._model_dir / MANIFEST).is_file()

    def poll(self) -> str:
        """Load the newest version if it is newer than the current one (blocking: run in a thread).

        Returns:
            SWAPPED, REJECTED (the newest version is broken; the current one keeps serving) or UNCHANGED.
        """
        if not self.follows_root:
            return UNCHANGED
        versions = list_versions(self._model_dir)
        if not versions:
            return UNCHANGED
        newest = versions[-1]
        if newest.name <= self.current.artifact.path.name or newest in self._rejected:
            return UNCHANGED
        try:
            engine = self._load(newest)
        except ArtifactError as exc:
            self._rejected.add(newest)
            logger.error("model %s rejected, still serving %s: %s", newest.name, self.current.version, exc)
            return REJECTED
        previous = self.current.version
        self.current = engine
        logger.info("model swapped: %s -> %s", previous, engine.version)
        return SWAPPED

"""The model being served, its shadow candidate, and the atomic switch to a newer version of either."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from serving.artifact import MANIFEST, ArtifactError, list_versions, load_artifact, newest_version, resolve_version
from serving.engine import Engine
from serving.mixture import DEFAULT_MIX, NewRowMix

logger = logging.getLogger(__name__)

SWAPPED = "swapped"
REJECTED = "rejected"
UNCHANGED = "unchanged"


def engine_loader(
    device: str,
    max_batch: int,
    threads: int,
    exclude_seen: bool,
    top_k: int = 1,
    prepare: Callable[[Engine], object] | None = None,
    new_rows: NewRowMix | None = DEFAULT_MIX,
) -> Callable[[Path], Engine]:
    """A function that loads, validates and warms up the engine of one version folder.

    ``top_k``: the list length the worker asks for; a version whose graph returns fewer items is refused.
    ``prepare``: runs on the loaded engine before it is served (the worker adds the live catalog's new items).
    ``new_rows``: how those new items compete with the trained ones (:mod:`serving.mixture`).
    """

    def load(path: Path) -> Engine:
        artifact = load_artifact(path)
        if artifact.top_k < top_k:
            raise ArtifactError(
                f"{path} returns {artifact.top_k} items per list and STREAMREC_TOP_K is {top_k}: re-export it with "
                f"`streamrec export --top-k {top_k}` or lower STREAMREC_TOP_K"
            )
        engine = Engine(
            artifact,
            device=device,
            max_batch=max_batch,
            threads=threads,
            exclude_seen=exclude_seen,
            new_rows=new_rows,
        )
        engine.warmup()
        if prepare is not None:
            prepare(engine)
        return engine

    return load


SHADOW_DIR = "shadow"  # a model root's folder of candidate versions, scored beside the live one, never published


class ModelRegistry:
    """Holds the engine being served, and the shadow candidate if there is one; :meth:`poll` follows both.

    Readers take ``registry.current`` (and ``registry.shadow``) once per batch, so a batch is scored by exactly
    one model; a swap is a single reference assignment, done only after the new engine is loaded and warm.

    Args:
        shadow: the shadow model (a version folder or a root of versions); default: ``<model_dir>/shadow/`` when
            ``model_dir`` is a model root.
    """

    def __init__(self, model_dir: Path | str, load: Callable[[Path], Engine], shadow: Path | str | None = None) -> None:
        self._model_dir = Path(model_dir)
        self._load = load
        self._rejected: set[Path] = set()
        self.current: Engine = load(resolve_version(self._model_dir))
        self._shadow_dir = Path(shadow) if shadow is not None else None
        if (
            self._shadow_dir is not None
            and not list_versions(self._shadow_dir)
            and not (self._shadow_dir / MANIFEST).is_file()
        ):
            raise ArtifactError(
                f"STREAMREC_SHADOW_MODEL={self._shadow_dir} holds no model version: point it at a version folder "
                "or a folder of versions, or unset it"
            )
        self.shadow: Engine | None = None
        self.poll_shadow()

    @property
    def shadow_source(self) -> Path | None:
        """Where the shadow comes from: the setting, else the model root's ``shadow/`` folder."""
        if self._shadow_dir is not None:
            return self._shadow_dir
        return self._model_dir / SHADOW_DIR if self.follows_root else None

    def poll_shadow(self) -> str:
        """Load the shadow source's newest version if it is not the shadow already; drop the shadow when the
        source is empty (blocking: run in a thread). Returns SWAPPED, REJECTED or UNCHANGED."""
        source = self.shadow_source
        if source is None:
            return UNCHANGED
        newest = newest_version(source)
        if newest is None:
            if self.shadow is not None:
                logger.info("shadow model %s removed: no shadow scoring", self.shadow.version)
                self.shadow = None
                return SWAPPED
            return UNCHANGED
        if (
            self.shadow is not None and Path(self.shadow.artifact.path).resolve() == newest.resolve()
        ) or newest in self._rejected:
            return UNCHANGED
        try:
            engine = self._load(newest)
        except ArtifactError as exc:
            self._rejected.add(newest)
            logger.error("shadow model %s rejected: %s", newest, exc)
            return REJECTED
        self.shadow = engine
        logger.info("shadow model %s scored beside live %s (never published)", engine.version, self.current.version)
        return SWAPPED

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

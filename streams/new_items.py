"""New catalog items made recommendable: their rows computed from their text, added to every engine served.

An item on `items` that a model was not trained on gets the row training gives a text-only item: the artifact's
text encoder (ONNX, no torch) and its learned projection (``serving.text_rows``). Rows are added to the live and
the shadow engine as the catalog changes, and to a newly loaded version before it is served, so a model swap
keeps the catalog. An item is embedded once per model version, when it is available and has a title or text;
a later change of its text does not re-embed it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

from serving.engine import Engine
from serving.text_rows import TextRows, item_text
from streams.catalog import Catalog
from streams.metrics import Metrics

logger = logging.getLogger(__name__)

BATCH = 256  # items embedded per encoder call (and per add to the engine: they become recommendable together)


class NewItems:
    """Adds the catalog's new items to engines (thread-safe; embedding is blocking: never on the event loop).

    Args:
        catalog: the live catalog.
        metrics: ``streamrec_catalog_items_embedded_total`` and ``streamrec_item_recommendable_seconds``.
        text_rows: the text encoder of an engine's artifact (None: that version cannot embed new items).
    """

    def __init__(
        self,
        catalog: Catalog,
        metrics: Metrics,
        text_rows: Callable[[Engine], TextRows | None] = lambda engine: TextRows.load(engine.artifact),
    ) -> None:
        self._catalog = catalog
        self._metrics = metrics
        self._text_rows = text_rows
        self._lock = threading.Lock()
        self._encoders: weakref.WeakKeyDictionary[Engine, TextRows | None] = weakref.WeakKeyDictionary()
        self._synced: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()

    def prepare(self, engine: Engine) -> Engine:
        """Add every new item to a freshly loaded engine (before it is served); returns it."""
        self.sync(engine, live=False)
        return engine

    def sync(self, engine: Engine, live: bool = True) -> int:
        """Add the catalog's items that ``engine`` lacks; returns how many. ``live``: the engine is serving (its
        additions count as items made recommendable)."""
        state = self._catalog.state
        if self._synced.get(engine) == state:
            return 0
        with self._lock:
            vocab = engine.vocab
            new = [
                item
                for item in self._catalog.items()
                if item.available and item.item_id not in vocab and (item.title or item.text)
            ]
            encoder = self._encoder(engine) if new else None  # loaded on first need (~100 MB for MiniLM)
            if encoder is None:
                self._synced[engine] = state
                return 0
            added = 0
            started = time.monotonic()
            for start in range(0, len(new), BATCH):
                chunk = new[start : start + BATCH]
                rows = encoder.rows([item_text(i.title, i.category, i.text) for i in chunk])
                added += engine.add_items([i.item_id for i in chunk], rows)
                self._metrics.items_embedded.inc(len(chunk))
                if live:
                    now = time.time()
                    for item in chunk:
                        published = self._catalog.published_at(item.item_id)
                        if published is not None:
                            self._metrics.item_recommendable.observe(max(0.0, now - published))
                if len(new) > BATCH:
                    logger.info("model %s: %d of %d new items embedded", engine.version, start + len(chunk), len(new))
            self._synced[engine] = state
        if added:
            logger.log(
                logging.INFO if added > 1 or not live else logging.DEBUG,
                "model %s: %d new items added from their text in %.2fs (%d rows, capacity %d)",
                engine.version,
                added,
                time.monotonic() - started,
                len(engine.rows),
                engine.capacity,
            )
        return added

    def _encoder(self, engine: Engine) -> TextRows | None:
        if engine not in self._encoders:
            encoder = self._text_rows(engine)
            if encoder is None:
                logger.warning(
                    "model %s has no text encoder: items it was not trained on are not recommended until a version "
                    "trained with text (`streamrec train` without --no-text) is served",
                    engine.version,
                )
            self._encoders[engine] = encoder
        return self._encoders[engine]

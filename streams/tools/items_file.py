"""`streamrec items FILE`: publish a catalog file to the `items` topic (JSONL, or MovieLens `movies.dat`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from kafka import KafkaProducer
from tqdm import tqdm

from streams.items import Item, item_record, parse_item
from streams.kafka_admin import ensure_topics
from streams.records import InvalidEvent
from streams.tools.produce import count_lines

logger = logging.getLogger(__name__)


def read_items(path: Path, scenario: str | None = None) -> Iterator[Item]:
    """Items of a JSONL file (the `items` contract per line) or of MovieLens `movies.dat` (`id::title::genres`).

    ``scenario`` is given to items that have none. A line that breaks the contract stops with its line number.
    """
    movies = path.name.endswith(".dat")
    with path.open(encoding="latin-1" if movies else "utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                if movies:
                    movie_id, title, genres = line.rstrip("\n").split("::")
                    names = genres.split("|")
                    item = Item(movie_id, title, f"{title}. {', '.join(names)}", names[0])
                else:
                    payload = json.loads(line)
                    key = str(payload.get("item_id", "")).encode() if isinstance(payload, dict) else None
                    item = parse_item(line.encode("utf-8"), key)
            except (ValueError, InvalidEvent) as exc:
                raise ValueError(f"{path} line {number}: {exc}") from None
            if item is None:
                continue
            if item.scenario is None and scenario is not None:
                item = Item(item.item_id, item.title, item.text, item.category, scenario, item.available)
            yield item


def publish_items(bootstrap: str, topic: str, path: Path, scenario: str | None, partitions: int) -> int:
    """Send every item of ``path`` keyed by its id, with a progress bar; returns how many were sent."""
    ensure_topics(bootstrap, {topic: partitions}, strict=False, configs={"cleanup.policy": "compact"})
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=5, client_id="streamrec-items")
    started = time.monotonic()
    sent = 0
    try:
        with tqdm(total=count_lines(path), unit="item", desc=f"items -> {topic}") as bar:
            for item in read_items(path, scenario):
                producer.send(topic, key=item.item_id.encode(), value=item_record(item))
                sent += 1
                bar.update(1)
        producer.flush()
    finally:
        producer.close()
    logger.info("sent %d items to %s in %.1fs", sent, topic, time.monotonic() - started)
    return sent

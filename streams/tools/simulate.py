"""Synthetic event log with learnable sequential structure (numpy only, no torch or faust)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from streams.records import DEFAULT_EVENT_TYPES

logger = logging.getLogger(__name__)

EVENT_TYPES = DEFAULT_EVENT_TYPES
EVENT_TYPE_PROBS = (0.5, 0.35, 0.1, 0.05)

_CATEGORIES = {
    "shoes": ("sneakers", "boots", "sandals", "loafers", "trainers", "slippers", "heels", "clogs"),
    "kitchen": ("knife", "skillet", "kettle", "cutting board", "saucepan", "whisk", "colander", "teapot"),
    "books": ("novel", "cookbook", "atlas", "biography", "poetry collection", "thriller", "comic", "field guide"),
    "garden": ("trowel", "hose", "planter", "rake", "seed kit", "pruning shears", "watering can", "wheelbarrow"),
    "music": ("guitar", "ukulele", "drum pad", "keyboard", "violin", "harmonica", "amplifier", "metronome"),
    "outdoor": (
        "tent",
        "backpack",
        "sleeping bag",
        "headlamp",
        "camping stove",
        "compass",
        "hiking poles",
        "water filter",
    ),
    "toys": ("puzzle", "building blocks", "plush bear", "kite", "toy train", "yo-yo", "board game", "rubber duck"),
    "beauty": ("lipstick", "face cream", "shampoo", "perfume", "nail polish", "hair brush", "sunscreen", "face mask"),
    "electronics": ("headphones", "charger", "speaker", "smartwatch", "webcam", "router", "power bank", "earbuds"),
    "pets": ("dog leash", "cat tree", "fish tank", "bird cage", "chew toy", "pet bed", "litter box", "collar"),
    "office": (
        "stapler",
        "notebook",
        "desk lamp",
        "fountain pen",
        "binder",
        "whiteboard",
        "paper shredder",
        "desk organizer",
    ),
    "sports": (
        "tennis racket",
        "football",
        "yoga mat",
        "dumbbell",
        "jump rope",
        "cycling helmet",
        "swim goggles",
        "basketball",
    ),
}
_ADJECTIVES = (
    "red",
    "blue",
    "green",
    "black",
    "white",
    "vintage",
    "compact",
    "deluxe",
    "classic",
    "rustic",
    "modern",
    "sturdy",
    "lightweight",
    "premium",
    "handmade",
    "bamboo",
    "leather",
    "wooden",
    "silver",
    "golden",
    "organic",
    "waterproof",
    "foldable",
    "cozy",
    "bright",
    "minimalist",
    "retro",
    "eco",
    "travel",
    "smart",
)


def _title(nouns: tuple[str, ...], k: int, c: int, adjectives: tuple[str, ...] = _ADJECTIVES) -> tuple[str, str]:
    """The ``k``-th title of category ``c`` drawn from ``nouns``: ``(noun, title)``, e.g. "vintage kettle".

    Nouns cycle fastest, then adjectives (offset by the category); a full cycle adds " mk2", " mk3"...
    """
    noun = nouns[k % len(nouns)]
    adj = adjectives[(k // len(nouns) + 7 * c) % len(adjectives)]
    series = k // (len(nouns) * len(adjectives))
    return noun, f"{adj} {noun}" + (f" mk{series + 1}" if series else "")


def _make_items(n_items: int, rng: np.random.Generator) -> tuple[list[dict], np.ndarray]:
    """Builds the catalog: item dicts and the category index of every item."""
    names = list(_CATEGORIES)
    n_cat = max(2, min(len(names), n_items // 8 or 1))
    cats = np.arange(n_items) % n_cat
    rng.shuffle(cats)
    items = []
    per_cat_count = [0] * n_cat
    for i in range(n_items):
        c = int(cats[i])
        nouns = _CATEGORIES[names[c]]
        k = per_cat_count[c]
        per_cat_count[c] += 1
        noun, title = _title(nouns, k, c)
        items.append(
            {
                "item_id": f"i{i}",
                "title": title,
                "text": f"{title}, a {noun} from our {names[c]} range",
                "category": names[c],
                "available": True,
            }
        )
    return items, cats


def simulate(
    n_users: int,
    n_items: int,
    events_per_user: int | tuple[int, int],
    seed: int,
) -> tuple[list[dict], list[dict]]:
    """Generates a synthetic, deterministic event log and its item catalog.

    Items belong to categories (titles like "vintage kettle", text naming the category) and sit
    on a per-category "trail", an ordered chain. A user mostly walks 1-3 steps forward along the
    trail of the item just seen (70%), sometimes takes a popular item of the same category (15%),
    and otherwise drifts to a category it likes (Dirichlet preferences). Users never take an
    item twice. So the next item depends on the last ones: a sequential model wins clearly,
    popularity alone does much worse.

    Args:
        n_users: number of users (ids ``u0 .. u{n-1}``).
        n_items: number of catalog items (ids ``i0 .. i{n-1}``), at least 2.
        events_per_user: events per user, or an inclusive ``(low, high)`` range drawn per user
            (capped at ``n_items``: users never interact with an item twice).
        seed: random seed; the same arguments give the same output.

    Returns:
        ``(events, items)``: events follow the ``events`` topic contract, sorted by ``ts``
        (increasing per user); items follow the ``items`` topic contract.
    """
    if n_users < 1 or n_items < 2:
        raise ValueError("simulate needs n_users >= 1 and n_items >= 2")
    rng = np.random.default_rng(seed)
    items, cats = _make_items(n_items, rng)
    n_cat = int(cats.max()) + 1

    # Each category's trail: a random order of its items; succ[i] = position of i on its trail.
    trails = [rng.permutation(np.flatnonzero(cats == c)) for c in range(n_cat)]
    trail_of = [0] * n_items
    pos_of = [0] * n_items
    for c, trail in enumerate(trails):
        for p, i in enumerate(trail.tolist()):
            trail_of[i], pos_of[i] = c, p
    trails_l = [t.tolist() for t in trails]

    # Zipf-ish popularity inside each category (for "popular in category" picks and entry points).
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop = pop[rng.permutation(n_items)]
    cat_items = [np.flatnonzero(cats == c) for c in range(n_cat)]
    cat_cdf = [np.cumsum(pop[ci]) / pop[ci].sum() for ci in cat_items]

    if isinstance(events_per_user, tuple):
        lo, hi = events_per_user
        lengths = rng.integers(lo, hi + 1, size=n_users)
    else:
        lengths = np.full(n_users, events_per_user)
    lengths = np.minimum(lengths, n_items)

    user_pref = rng.dirichlet(np.full(n_cat, 0.3), size=n_users)  # [U, C] favourite categories
    pref_cdf = np.cumsum(user_pref, axis=1)
    type_cdf = np.cumsum(EVENT_TYPE_PROBS)
    t0 = 1_763_800_000.0

    events: list[dict] = []
    eid = 0
    for u in range(n_users):
        n = int(lengths[u])
        draws = rng.random((n, 4)).tolist()
        steps = rng.integers(1, 4, size=n).tolist()
        gaps = rng.exponential(90.0, size=n).tolist()
        types = np.searchsorted(type_cdf, rng.random(n)).tolist()
        seen: set[int] = set()
        ts = t0 + float(rng.uniform(0, 86_400.0))
        cur = -1
        for k in range(n):
            r_move, r_cat, r_item, _ = draws[k]
            nxt = -1
            if cur >= 0 and r_move < 0.7:  # walk forward on the current trail
                trail = trails_l[trail_of[cur]]
                p = pos_of[cur]
                for s in range(steps[k], steps[k] + len(trail)):
                    cand = trail[(p + s) % len(trail)]
                    if cand not in seen:
                        nxt = cand
                        break
            if nxt < 0:
                if cur >= 0 and r_move < 0.85:  # a popular item of the same category
                    c = trail_of[cur]
                else:  # drift to a category the user likes
                    c = min(int(np.searchsorted(pref_cdf[u], r_cat)), n_cat - 1)
                j = int(np.searchsorted(cat_cdf[c], r_item))
                ci = cat_items[c]
                for s in range(len(ci)):
                    cand = int(ci[(j + s) % len(ci)])
                    if cand not in seen:
                        nxt = cand
                        break
            if nxt < 0:  # the category is exhausted: any unseen item
                nxt = next(i for i in range(n_items) if i not in seen)
            seen.add(nxt)
            cur = nxt
            ts += gaps[k] + 1.0
            events.append(
                {
                    "user_id": f"u{u}",
                    "item_id": f"i{nxt}",
                    "event_type": EVENT_TYPES[types[k]],
                    "ts": round(ts, 3),
                    "event_id": f"sim{seed}-{eid}",
                }
            )
            eid += 1
    events.sort(key=lambda e: e["ts"])
    logger.info("simulated %d events, %d users, %d items", len(events), n_users, n_items)
    return events, items


def write_dataset(out_dir: str | Path, events: list[dict], items: list[dict]) -> tuple[Path, Path]:
    """Writes ``events.jsonl`` and ``items.jsonl`` (one JSON object per line) into ``out_dir``.

    Returns:
        ``(events_path, items_path)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    events_path, items_path = out / "events.jsonl", out / "items.jsonl"
    for path, rows in ((events_path, events), (items_path, items)):
        with path.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return events_path, items_path

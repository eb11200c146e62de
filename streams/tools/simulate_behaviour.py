"""Synthetic multi-scenario event log whose event types and scenarios carry signal (numpy only)."""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from streams.tools.simulate import _CATEGORIES, _title

logger = logging.getLogger(__name__)

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")  # all in streams.records.DEFAULT_EVENT_TYPES
VIEW, CLICK, ADD_TO_CART, PURCHASE = EVENT_TYPES
SCENARIOS = ("shop", "video", "news")
SHOP, VIDEO, NEWS = range(len(SCENARIOS))
SCENARIO_SHARES = (0.5, 0.3, 0.2)  # of the items, and of the users' home scenarios
MIN_ITEMS = (2, 20, 40)  # the smallest catalog that has the scenario
CATEGORY_SIZES = (8, 12, 10)  # about this many items per category (shop: at least 2 categories)

SWITCH_PROB = 0.12  # per event, from the home scenario to another one
RETURN_PROBS = (0.25, 0.3, 0.5)  # per event, from a visited scenario back home
PAUSE_PROBS = (0.05, 0.1, 0.3)  # per event, a pause of hours follows and the user comes back home
COMPLEMENT_PROB = 0.85  # shop, after a purchase: a popular item of the category's complement
STAY_PROB = 0.9  # shop, after a view, click or add_to_cart: 1-2 steps on the category's trail
SHOP_TYPE_PROBS = {  # shop: P(view, click, add_to_cart, purchase) given the last event type of the search
    VIEW: (0.62, 0.18, 0.1, 0.1),
    CLICK: (0.5, 0.1, 0.25, 0.15),
    ADD_TO_CART: (0.35, 0.05, 0.1, 0.5),
}
NEXT_EPISODE_PROB = 0.8  # video, after a view (watched): the series' next episode
SAME_GENRE_PROB = 0.7  # video, after a click (a preview): the first episode of a popular series of the genre
VIDEO_TYPE_PROBS = (0.85, 0.15, 0.0, 0.0)
SAME_TOPIC_PROB = 0.6  # news: the next story has the last story's topic
NEWS_TYPE_PROBS = (0.15, 0.85, 0.0, 0.0)
RECENT_SPREAD = 6  # news: how many stories back from the latest one a user may go

# Shop: the category bought into after a purchase (never itself); a missing one falls back to the next category.
_COMPLEMENTS = {
    "shoes": "sports",
    "kitchen": "books",
    "books": "office",
    "garden": "outdoor",
    "music": "electronics",
    "outdoor": "shoes",
    "toys": "books",
    "beauty": "shoes",
    "electronics": "office",
    "pets": "garden",
    "office": "electronics",
    "sports": "outdoor",
}
_GENRES = {
    "drama": ("harbour", "inheritance", "verdict", "ward", "crossing", "homecoming", "orchard", "lighthouse"),
    "comedy": ("flatmates", "office party", "road trip", "wedding", "neighbours", "night shift", "reunion", "campsite"),
    "documentary": ("glaciers", "deep sea", "rainforest", "volcanoes", "migration", "deserts", "reefs", "night sky"),
    "cooking": ("bakery", "street food", "noodle bar", "barbecue", "pastry", "farmhouse", "spices", "soup pot"),
    "crime": ("detective", "heist", "cold case", "informant", "safehouse", "alibi", "precinct", "witness"),
    "animation": ("robot", "dragon", "space cat", "forest spirits", "pirate ship", "tiny heroes", "moon base", "racer"),
}
_TOPICS = {
    "world": ("election", "summit", "treaty", "ceasefire", "referendum", "border talks", "embassy", "sanctions"),
    "business": ("markets", "merger", "interest rates", "startup", "earnings", "strike", "oil prices", "layoffs"),
    "science": ("vaccine", "telescope", "fossil", "climate study", "gene therapy", "rover", "particle", "ocean survey"),
    "sport": ("final", "transfer", "derby", "marathon", "grand prix", "title race", "injury", "olympics"),
    "culture": ("film festival", "album", "exhibition", "book prize", "premiere", "concert", "museum", "theatre"),
    "tech": ("chip shortage", "app update", "data breach", "ai model", "launch", "phone", "outage", "robotaxi"),
}
_NOUNS = (_CATEGORIES, _GENRES, _TOPICS)
_HEADLINES = ("live:", "explainer:", "analysis:", "update:", "exclusive:", "opinion:", "in pictures:", "breaking:")
_T0 = 1_763_800_000.0


@dataclass(frozen=True, slots=True)
class _Category:
    """A shop category, video genre or news topic, and how users enter it."""

    items: list[int]
    entries: list[int]  # the items a user enters it by (video: first episodes)
    entry_cdf: list[float]  # their popularity
    complement: int = -1  # shop: the category a purchase leads to
    by_time: list[int] = field(default_factory=list)  # news: the stories by publication time
    times: list[float] = field(default_factory=list)  # news: their publication times


@dataclass(frozen=True, slots=True)
class _Catalog:
    """Item indices by scenario, category and chain; categories are numbered across scenarios."""

    item_scen: list[int]
    item_cat: list[int]
    scen_items: list[list[int]]
    scen_cats: list[list[int]]
    cats: list[_Category]
    chains: list[list[int]]  # shop trails and video series, in order
    chain_of: list[int]  # -1: news
    pos_of: list[int]


_Named = list[tuple[str, list[int]]]  # a scenario's categories: (name, item indices)
_Built = tuple[dict[int, dict], list[_Category], list[list[int]]]  # item dicts, categories, chains


def complements(categories: Collection[str]) -> dict[str, str]:
    """The shop's complement map over ``categories`` (names of ``_CATEGORIES``, at least 2).

    Every category maps to another one: its partner in ``_COMPLEMENTS`` when that is among
    ``categories``, else the next of ``categories`` in ``_CATEGORIES`` order (cyclically).
    """
    used = [name for name in _CATEGORIES if name in categories]
    return {
        name: _COMPLEMENTS[name] if _COMPLEMENTS[name] in used else used[(k + 1) % len(used)]
        for k, name in enumerate(used)
    }


def _zipf_cdf(n: int, rng: np.random.Generator) -> list[float]:
    pop = 1.0 / np.arange(1, n + 1) ** 0.8
    pop = pop[rng.permutation(n)]
    return (np.cumsum(pop) / pop.sum()).tolist()


def _row(i: int, s: int, category: str, title: str, text: str) -> dict:
    return {
        "item_id": f"i{i}",
        "title": title,
        "text": text,
        "category": category,
        "scenario": SCENARIOS[s],
        "available": True,
    }


def _split(n_items: int, rng: np.random.Generator) -> list[_Named]:
    """Per scenario present, its categories: ``(name, item indices)``, a random split of the catalog."""
    n_scen = sum(n_items >= m for m in MIN_ITEMS)
    sizes = [round(SCENARIO_SHARES[s] / sum(SCENARIO_SHARES[:n_scen]) * n_items) for s in range(1, n_scen)]
    ids = rng.permutation(n_items).tolist()
    bounds = np.cumsum([0, n_items - sum(sizes), *sizes]).tolist()
    out = []
    for s in range(n_scen):
        group = ids[bounds[s] : bounds[s + 1]]
        names = list(_NOUNS[s])
        n_cat = min(len(names), max(2 if s == SHOP else 1, len(group) // CATEGORY_SIZES[s]))
        local = np.arange(len(group)) % n_cat
        rng.shuffle(local)
        out.append([(names[c], [group[k] for k in np.flatnonzero(local == c).tolist()]) for c in range(n_cat)])
    return out


def _shop(named: _Named, first: int, rng: np.random.Generator) -> _Built:
    """Shop items ("vintage kettle"), one trail per category, each category's complement."""
    rows, cats, chains = {}, [], []
    partner = complements([name for name, _ in named])
    index = {name: first + c for c, (name, _) in enumerate(named)}
    for c, (name, members) in enumerate(named):
        for k, i in enumerate(members):
            noun, title = _title(_CATEGORIES[name], k, c)
            rows[i] = _row(i, SHOP, name, title, f"{title}, a {noun} from our {name} range")
        chains.append(rng.permutation(members).tolist())
        cats.append(_Category(members, members, _zipf_cdf(len(members), rng), index[partner[name]]))
    return rows, cats, chains


def _video(named: _Named, first: int, rng: np.random.Generator) -> _Built:
    """Video episodes ("golden harbour, episode 2") in series of 3-8, by genre."""
    rows, cats, chains = {}, [], []
    for c, (name, members) in enumerate(named):
        starts, p = [], 0
        for k, length in enumerate(rng.integers(3, 9, size=len(members)).tolist()):
            series = members[p : p + length]
            if not series:
                break
            _, show = _title(_GENRES[name], k, c)
            for e, i in enumerate(series):
                rows[i] = _row(i, VIDEO, name, f"{show}, episode {e + 1}", f"{show}, episode {e + 1}, a {name} series")
            chains.append(series)
            starts.append(series[0])
            p += length
        cats.append(_Category(members, starts, _zipf_cdf(len(starts), rng)))
    return rows, cats, chains


def _news(named: _Named, first: int, rng: np.random.Generator) -> _Built:
    """News stories ("live: summit") by topic, published over the simulated day and a half."""
    rows, cats = {}, []
    for c, (name, members) in enumerate(named):
        cycle = len(_TOPICS[name]) * len(_HEADLINES)
        for k, i in enumerate(members):
            _, title = _title(_TOPICS[name], k % cycle, c, _HEADLINES)
            title += f" ({k // cycle + 1})" if k >= cycle else ""
            rows[i] = _row(i, NEWS, name, title, f"{title}, {name} news")
        published = (_T0 + rng.uniform(-6 * 3600.0, 30 * 3600.0, size=len(members))).tolist()
        order = np.argsort(published, kind="stable").tolist()
        by_time, times = [members[o] for o in order], [published[o] for o in order]
        cats.append(_Category(members, members, _zipf_cdf(len(members), rng), by_time=by_time, times=times))
    return rows, cats, []


def _make_catalog(n_items: int, rng: np.random.Generator) -> tuple[list[dict], _Catalog]:
    """The item dicts and their indices: scenarios, categories, trails and series, publication times."""
    rows: dict[int, dict] = {}
    scen_items, scen_cats, cats, chains = [], [], [], []
    for s, named in enumerate(_split(n_items, rng)):
        r, c, ch = (_shop, _video, _news)[s](named, len(cats), rng)
        scen_items.append([i for _, members in named for i in members])
        scen_cats.append(list(range(len(cats), len(cats) + len(c))))
        rows.update(r)
        cats += c
        chains += ch
    item_scen, item_cat, chain_of, pos_of = [0] * n_items, [0] * n_items, [-1] * n_items, [0] * n_items
    for s, members in enumerate(scen_items):
        for i in members:
            item_scen[i] = s
    for c, category in enumerate(cats):
        for i in category.items:
            item_cat[i] = c
    for h, chain in enumerate(chains):
        for p, i in enumerate(chain):
            chain_of[i], pos_of[i] = h, p
    items = [rows[i] for i in range(n_items)]
    return items, _Catalog(item_scen, item_cat, scen_items, scen_cats, cats, chains, chain_of, pos_of)


def _cdf(probs: tuple[float, ...]) -> list[float]:
    return np.cumsum(probs).tolist()


def _draw(cdf: list[float], r: float) -> int:
    return min(bisect.bisect_right(cdf, r), len(cdf) - 1)


_SHOP_TYPE_CDF = {t: _cdf(p) for t, p in SHOP_TYPE_PROBS.items()}
_VIDEO_TYPE_CDF = _cdf(VIDEO_TYPE_PROBS)
_NEWS_TYPE_CDF = _cdf(NEWS_TYPE_PROBS)


def _any_unseen(cat: _Catalog, c: int, seen: set[int]) -> int:
    """An unseen item of category ``c``, else of its scenario, else of the catalog."""
    scenario = cat.item_scen[cat.cats[c].items[0]]
    for i in itertools.chain(cat.cats[c].items, cat.scen_items[scenario], range(len(cat.item_cat))):
        if i not in seen:
            return i
    raise ValueError("every item is seen: events_per_user must not exceed n_items")


def _popular(cat: _Catalog, c: int, r: float, seen: set[int]) -> int:
    """An unseen entry of category ``c`` drawn by popularity (``r`` uniform in [0, 1))."""
    entries = cat.cats[c].entries
    j = _draw(cat.cats[c].entry_cdf, r)
    for s in range(len(entries)):
        i = entries[(j + s) % len(entries)]
        if i not in seen:
            return i
    return _any_unseen(cat, c, seen)


def _trail_step(cat: _Catalog, cur: int, step: int, wrap: bool, seen: set[int]) -> int:
    """The first unseen item ``step`` or more places after ``cur`` on its chain; -1 if none."""
    chain, p = cat.chains[cat.chain_of[cur]], cat.pos_of[cur]
    ahead = range(p + step, p + step + len(chain)) if wrap else range(p + step, len(chain))
    for q in ahead:
        i = chain[q % len(chain)]
        if i not in seen:
            return i
    return -1


def _liked(cat: _Catalog, s: int, pref_cdf: list[float], r: float) -> int:
    """A category of scenario ``s`` drawn from the user's preferences."""
    return cat.scen_cats[s][_draw(pref_cdf, r)]


def _next_event(
    cat: _Catalog,
    s: int,
    last: tuple[int, str] | None,
    r: list[float],
    step: int,
    pref_cdf: list[float],
    ts: float,
    seen: set[int],
) -> tuple[int, str]:
    """The user's next ``(item, event_type)`` in scenario ``s``, given its last event there.

    ``r`` holds uniform draws (move, category, item, type); ``step`` is a shop trail step (1 or 2).
    """
    r_move, r_cat, r_item, r_type = r
    if s == SHOP:
        if last is not None:
            cur, last_type = last
            c = cat.item_cat[cur]
            if last_type == PURCHASE and r_move < COMPLEMENT_PROB:  # the search ends: a complement
                return _popular(cat, cat.cats[c].complement, r_item, seen), VIEW
            if last_type != PURCHASE and r_move < STAY_PROB:  # the search goes on along the trail
                nxt = _trail_step(cat, cur, step, True, seen)
                nxt = nxt if nxt >= 0 else _popular(cat, c, r_item, seen)
                return nxt, EVENT_TYPES[_draw(_SHOP_TYPE_CDF[last_type], r_type)]
        return _popular(cat, _liked(cat, s, pref_cdf, r_cat), r_item, seen), VIEW  # a new search
    if s == VIDEO:
        event_type = EVENT_TYPES[_draw(_VIDEO_TYPE_CDF, r_type)]
        if last is not None:
            cur, last_type = last
            if last_type == VIEW and r_move < NEXT_EPISODE_PROB:  # watched: the next episode
                nxt = _trail_step(cat, cur, 1, False, seen)
                return (nxt if nxt >= 0 else _popular(cat, cat.item_cat[cur], r_item, seen)), event_type
            if last_type != VIEW and r_move < SAME_GENRE_PROB:  # previewed: another series of the genre
                return _popular(cat, cat.item_cat[cur], r_item, seen), event_type
        return _popular(cat, _liked(cat, s, pref_cdf, r_cat), r_item, seen), event_type
    c = cat.item_cat[last[0]] if last is not None and r_move < SAME_TOPIC_PROB else _liked(cat, s, pref_cdf, r_cat)
    stories, times = cat.cats[c].by_time, cat.cats[c].times
    j = min(max(bisect.bisect_right(times, ts) - 1 - int(r_item * r_item * RECENT_SPREAD), 0), len(stories) - 1)
    event_type = EVENT_TYPES[_draw(_NEWS_TYPE_CDF, r_type)]
    for p in itertools.chain(range(j, -1, -1), range(j + 1, len(stories))):  # recent first, then newer
        if stories[p] not in seen:
            return stories[p], event_type
    return _any_unseen(cat, c, seen), event_type


def simulate_behaviour(
    n_users: int,
    n_items: int,
    events_per_user: int | tuple[int, int],
    seed: int,
) -> tuple[list[dict], list[dict]]:
    """Generates a deterministic multi-scenario event log whose event types carry signal, and its catalog.

    Three scenarios ("shop", "video", "news"; only "shop" below 20 items, no "news" below 40) each
    have their own items (half, 30% and 20% of the catalog); users are shared. A user starts in a
    home scenario (same shares), switches to another one with probability 0.12 per event and comes
    back with 0.25 / 0.3 / 0.5 per event (shop / video / news); after a pause of hours (0.05 / 0.1 /
    0.3 per event) it starts again at home. In each scenario the next event follows the user's last
    event in that scenario:

    - shop: items in categories, each category an ordered "trail". A search is a run of views,
      clicks and add_to_carts (next type from the last one, see ``SHOP_TYPE_PROBS``) moving 1-2
      steps along the trail (0.9; else a new search in a liked category). A purchase ends the
      search: the next event is a view of a popular item of the category's complement (0.85, see
      ``_COMPLEMENTS``). So the item alone is ambiguous; its event type says what comes next.
    - video: genres of series. After a view (0.85 of events) the next episode (0.8); after a click
      (a preview) the first episode of a popular series of the same genre (0.7).
    - news: topics of stories, mostly clicks, short sessions. The next story has the same topic
      (0.6) and is among the latest ones published before the event (recency).

    Users never take an item twice.

    Args:
        n_users: number of users (ids ``u0 .. u{n-1}``).
        n_items: number of catalog items (ids ``i0 .. i{n-1}``), at least 2.
        events_per_user: events per user, or an inclusive ``(low, high)`` range drawn per user
            (capped at ``n_items``).
        seed: random seed; the same arguments give the same output.

    Returns:
        ``(events, items)``: events follow the ``events`` topic contract with a ``scenario`` (the
        item's), sorted by ``ts`` (increasing per user); items follow the ``items`` topic contract.
    """
    if n_users < 1 or n_items < 2:
        raise ValueError("simulate_behaviour needs n_users >= 1 and n_items >= 2")
    rng = np.random.default_rng(seed)
    items, cat = _make_catalog(n_items, rng)
    n_scen = len(cat.scen_cats)
    home_cdf = _cdf(SCENARIO_SHARES[:n_scen])
    away = [[x for x in range(n_scen) if x != h] for h in range(n_scen)]
    away_cdf = [_cdf(tuple(SCENARIO_SHARES[x] / sum(SCENARIO_SHARES[y] for y in a) for x in a)) for a in away]
    pref_cdfs = [np.cumsum(rng.dirichlet(np.full(len(c), 0.3), size=n_users), axis=1).tolist() for c in cat.scen_cats]

    if isinstance(events_per_user, tuple):
        lo, hi = events_per_user
        lengths = rng.integers(lo, hi + 1, size=n_users)
    else:
        lengths = np.full(n_users, events_per_user)
    lengths = np.minimum(lengths, n_items).tolist()

    events: list[dict] = []
    for u in range(n_users):
        n = lengths[u]
        draws = rng.random((n, 6)).tolist()
        steps = rng.integers(1, 3, size=n).tolist()
        gaps = rng.exponential(90.0, size=n).tolist()
        pauses = rng.exponential(3 * 3600.0, size=n).tolist()
        home = s = _draw(home_cdf, float(rng.random()))
        ts = _T0 + float(rng.uniform(0, 86_400.0))
        last: list[tuple[int, str] | None] = [None] * n_scen
        seen: set[int] = set()
        for k in range(n):
            r_pause, r_switch, *r = draws[k]
            if k and r_pause < PAUSE_PROBS[s]:  # a session ends; the next one starts at home
                ts, s = ts + pauses[k], home
            elif k and s == home and away[home] and r_switch < SWITCH_PROB:
                s = away[home][_draw(away_cdf[home], r_switch / SWITCH_PROB)]
            elif k and s != home and r_switch < RETURN_PROBS[s]:
                s = home
            ts += gaps[k] + 1.0
            item, event_type = _next_event(cat, s, last[s], r, steps[k], pref_cdfs[s][u], ts, seen)
            s = cat.item_scen[item]  # a fallback may leave an exhausted scenario
            last[s] = (item, event_type)
            seen.add(item)
            events.append(
                {
                    "user_id": f"u{u}",
                    "item_id": f"i{item}",
                    "event_type": event_type,
                    "ts": round(ts, 3),
                    "scenario": SCENARIOS[s],
                    "event_id": f"beh{seed}-{len(events)}",
                }
            )
    events.sort(key=lambda e: e["ts"])
    logger.info("simulated %d events (%d scenarios), %d users, %d items", len(events), n_scen, n_users, n_items)
    return events, items

"""Cold-start evaluation: items never seen in training, ranked from their text alone.

Protocol (``streamrec evaluate --cold-start``; see docs/model.md, "Cold start"):

1. **Cold items.** ``strict``: items whose every interaction is a test target (the last event
   of a user with >= 3 events), so the ordinary leave-last-out split never shows them in
   training or validation. ``random``: a seeded random ``holdout`` fraction of the items that
   occur in the log; every interaction with them is removed from the sequences except a user's
   last event (the test target). A user whose cold target would be left with fewer than 2
   earlier events loses that target (it cannot be tested). ``auto``: ``strict`` when it gives
   at least ``min_users`` cold test users, else ``random``.
2. **Vocabulary.** Items seen in training/validation ("warm") first, then every other catalog
   item (the cold items and catalog-only items) from its text.
3. **Training.** SASRec with text on the filtered split. ``rows="catalog"``: the cold rows are
   in the item table from the start, text-only (``id_mask`` 0), and therefore appear as
   negatives in the full softmax (exactly what ``streamrec train`` does with catalog-only
   items). ``rows="appended"``: the model is trained on the warm rows only and the cold rows,
   ``text_proj(text_emb)``, are appended after training (the serving live-catalog path).
4. **Evaluation** on the test users whose target is a cold item: full ranking over the whole
   catalog (seen excluded) and ranking among the cold items only.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from encoders.baselines import CoOccurrence, Popularity
from encoders.config import FIRST_ITEM_ID, ModelConfig, TrainConfig
from encoders.data import DataError, Interactions, natural_key
from encoders.evaluate import ScoreFn, evaluate_scorer, metrics_from_ranks
from encoders.split import EvalSet, Split, leave_last_out, left_pad
from encoders.vocab import Vocabulary

logger = logging.getLogger(__name__)

Protocol = Literal["auto", "strict", "random"]
Rows = Literal["catalog", "appended"]


@dataclass(frozen=True)
class ColdSplit:
    """A leave-last-out split with held-out cold items.

    Attributes:
        vocab: warm items (in the filtered train/validation sequences) first, then the rest of
            the catalog (cold items and catalog-only items).
        n_warm_rows: rows ``0 .. n_warm_rows - 1`` are pad, unknown and the warm items.
        cold: internal ids of the held-out cold items (sorted).
        split: leave-last-out split of the filtered sequences.
        cold_test: the test users whose target is a cold item.
        protocol: ``"strict"`` or ``"random"`` (what was used).
        info: counts describing the split.
    """

    vocab: Vocabulary
    n_warm_rows: int
    cold: np.ndarray
    split: Split
    cold_test: EvalSet
    protocol: str
    info: dict[str, Any]


def strict_cold_items(sequences: tuple[tuple[str, ...], ...]) -> set[str]:
    """Items whose every occurrence is the last event of a user with >= 3 events."""
    last, other = set(), set()
    for seq in sequences:
        if len(seq) >= 3:
            other.update(seq[:-1])
            last.add(seq[-1])
        else:
            other.update(seq)
    return last - other


def _filter(seq: tuple[str, ...], cold: set[str]) -> tuple[list[str], bool]:
    """Removes cold items except a test target; returns the sequence and whether a cold
    target had to be dropped (fewer than 2 events left before it)."""
    if len(seq) >= 3 and seq[-1] in cold:
        kept = [x for x in seq[:-1] if x not in cold]
        if len(kept) >= 2:
            return kept + [seq[-1]], False
        return kept, True
    return [x for x in seq if x not in cold], False


def cold_split(
    data: Interactions,
    protocol: Protocol = "auto",
    holdout: float = 0.1,
    min_users: int = 100,
    seed: int = 0,
) -> ColdSplit:
    """Chooses cold items and builds the filtered split (see the module docstring).

    Args:
        data: interactions with item texts.
        protocol: ``"strict"``, ``"random"`` or ``"auto"``.
        holdout: fraction of the occurring items held out by ``"random"``.
        min_users: ``"auto"`` uses ``"strict"`` when it yields at least this many cold test
            users.
        seed: seed of the random hold-out.

    Raises:
        DataError: when no test user has a cold target.
    """
    strict = strict_cold_items(data.sequences)
    n_strict_users = sum(1 for s in data.sequences if len(s) >= 3 and s[-1] in strict)
    if protocol == "auto":
        protocol = "strict" if n_strict_users >= min_users else "random"
    if protocol == "strict":
        cold = strict
    elif protocol == "random":
        if not 0.0 < holdout < 1.0:
            raise ValueError(f"--cold-holdout must be in (0, 1), not {holdout}")
        used = sorted({i for s in data.sequences for i in s}, key=natural_key)
        rng = np.random.default_rng(seed)
        n = max(1, round(holdout * len(used)))
        cold = {used[k] for k in rng.choice(len(used), size=n, replace=False)}
    else:
        raise ValueError(f"unknown cold-start protocol {protocol!r}")

    seqs, dropped, removed = [], 0, 0
    for s in data.sequences:
        f, lost = _filter(s, cold)
        dropped += lost
        removed += len(s) - len(f)
        if f:
            seqs.append(f)
    warm = {i for s in seqs for i in (s[:-1] if len(s) >= 3 else s)}
    if warm & cold:
        raise AssertionError("a cold item is left in the training data")  # pragma: no cover
    catalog = {i for s in seqs for i in s} | set(data.items) | cold
    ids = sorted(warm, key=natural_key)
    ids += sorted(catalog - warm, key=natural_key)
    titles = tuple(data.items[i].title if i in data.items else "" for i in ids)
    vocab = Vocabulary(tuple(ids), titles)
    split = leave_last_out([vocab.encode_seq(s) for s in seqs])
    cold_ids = np.sort(np.array([vocab.encode(i) for i in cold], dtype=np.int64))
    is_cold = np.isin(split.test.targets, cold_ids)
    cold_test = EvalSet(tuple(h for h, c in zip(split.test.histories, is_cold) if c), split.test.targets[is_cold])
    if len(cold_test) == 0:
        raise DataError("No test user has a cold target; use a larger --cold-holdout or more data.")
    no_text = sum(1 for i in cold if not (i in data.items and data.items[i].full_text))
    info = {
        "protocol": protocol,
        "holdout": holdout if protocol == "random" else None,
        "seed": seed if protocol == "random" else None,
        "strict_cold_items": len(strict),
        "strict_cold_test_users": n_strict_users,
        "cold_items": len(cold),
        "cold_items_without_text": no_text,
        "cold_items_as_targets": int(np.unique(cold_test.targets).size),
        "events_removed": removed,
        "cold_targets_dropped": dropped,
        "catalog_items": vocab.n_items,
        "warm_items": len(warm),
        "test_users": len(split.test),
        "cold_test_users": len(cold_test),
    }
    return ColdSplit(vocab, len(warm) + FIRST_ITEM_ID, cold_ids, split, cold_test, protocol, info)


def expected_random(n_candidates: int, k: int = 10) -> dict[str, float]:
    """Expected metrics of a uniformly random ranking of ``n_candidates`` with one target."""
    n = max(int(n_candidates), 1)
    r = np.arange(min(k, n))
    return {
        f"ndcg@{k}": float((1.0 / np.log2(r + 2.0)).sum() / n),
        f"recall@{k}": min(k, n) / n,
        "mrr": float((1.0 / np.arange(1, n + 1)).sum() / n),
    }


def restrict(score_fn: ScoreFn, candidates: np.ndarray) -> ScoreFn:
    """A scorer whose items outside ``candidates`` score ``-inf`` (never ranked)."""

    def score(histories: list[np.ndarray]) -> np.ndarray:
        s = np.asarray(score_fn(histories), dtype=np.float32)
        out = np.full_like(s, -np.inf)
        out[:, candidates] = s[:, candidates]
        return out

    return score


def text_similarity_scorer(text_emb: np.ndarray) -> ScoreFn:
    """Cosine between the text of the user's newest item and every item's text."""
    norm = np.linalg.norm(text_emb, axis=1, keepdims=True)
    unit = (text_emb / np.maximum(norm, 1e-12)).astype(np.float32)  # zero rows stay zero

    def score(histories: list[np.ndarray]) -> np.ndarray:
        last = np.array([h[-1] if len(h) else 0 for h in histories], dtype=np.int64)
        return unit[last] @ unit.T  # [B, N]

    return score


def sasrec_table_scorer(model: Any, table: torch.Tensor, device: torch.device | str) -> ScoreFn:
    """SASRec scores against a given item table (e.g. with appended cold rows)."""

    def score(histories: list[np.ndarray]) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            seq = torch.from_numpy(left_pad(histories, model.config.max_len)).to(device)
            return model.score_last(seq, table).float().cpu().numpy()

    return score


def full_table(model: Any, text_emb: np.ndarray, rows: Rows) -> torch.Tensor:
    """The item table over the whole catalog: ``catalog`` = the model's own table; ``appended``
    = the model's (warm) table plus ``text_proj(text_emb)`` for the remaining rows."""
    model.eval()
    with torch.no_grad():
        table = model.item_table()
        if rows == "appended":
            dev = table.device
            rest = torch.from_numpy(text_emb[table.shape[0] :]).to(dev)
            table = torch.cat([table, model.text_proj(rest)], dim=0)
    return table


def evaluate_cold(
    cs: ColdSplit, text_emb: np.ndarray, sasrec: ScoreFn | None
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics on the cold test users: ``full`` (whole catalog) and ``cold_only`` (ranking
    among the held-out items), plus the SASRec metrics on all and warm test users."""
    n_rows = cs.vocab.n_rows
    fit = cs.split.train_valid
    pop, cooc = Popularity(fit, n_rows), CoOccurrence(fit, n_rows)
    text = text_similarity_scorer(text_emb)
    scorers: dict[str, ScoreFn] = {}
    if sasrec is not None:
        scorers["sasrec_text"] = sasrec
    scorers.update({"popularity": pop.score, "cooccurrence": cooc.score, "text_similarity": text})
    full = {name: evaluate_scorer(fn, cs.cold_test) for name, fn in scorers.items()}
    cold_only = {
        name: evaluate_scorer(restrict(fn, cs.cold), cs.cold_test)
        for name, fn in scorers.items()
        if name != "cooccurrence"
    }
    cold_only["random_expected"] = expected_random(len(cs.cold))
    out: dict[str, Any] = {"full": full, "cold_only": cold_only}
    if sasrec is not None:
        is_cold = np.isin(cs.split.test.targets, cs.cold)
        warm = EvalSet(
            tuple(h for h, c in zip(cs.split.test.histories, is_cold) if not c), cs.split.test.targets[~is_cold]
        )
        out["context"] = {
            "sasrec_text_all_test_users": evaluate_scorer(sasrec, cs.split.test),
            "sasrec_text_warm_test_users": evaluate_scorer(sasrec, warm),
            "popularity_warm_test_users": evaluate_scorer(pop.score, warm),
        }
    return out


def run_cold_start(
    data: Interactions,
    model_config: ModelConfig,
    train_config: TrainConfig,
    text_emb_fn: Any,
    protocol: Protocol = "auto",
    holdout: float = 0.1,
    min_users: int = 100,
    rows: Rows = "catalog",
    progress: bool = True,
) -> dict[str, Any]:
    """Splits, trains SASRec with text on the warm data and evaluates the cold test users.

    Args:
        data: interactions with item texts.
        model_config, train_config: as for ``streamrec train``.
        text_emb_fn: ``texts -> [len(texts) + 2, text_dim]`` float32 table (zero rows for pad,
            unknown and items without text).
        protocol, holdout, min_users: see :func:`cold_split` (seeded with ``train_config.seed``).
        rows: ``"catalog"`` or ``"appended"`` (see the module docstring).
        progress: show progress bars.

    Returns:
        ``{"split": info, "training": ..., "metrics": ...}``.
    """
    from encoders.train import build_model, resolve_device, seed_everything, train_model

    if rows not in ("catalog", "appended"):
        raise ValueError(f"unknown rows mode {rows!r}")
    cs = cold_split(data, protocol, holdout, min_users, seed=train_config.seed)
    logger.info("cold split: %s", cs.info)
    texts = [data.items[i].full_text if i in data.items else "" for i in cs.vocab.item_ids]
    text_emb = np.asarray(text_emb_fn(texts), dtype=np.float32)
    if not np.any(text_emb[cs.cold]):
        raise DataError("The cold items have no text, so nothing can rank them; give item texts.")
    n_rows = cs.vocab.n_rows if rows == "catalog" else cs.n_warm_rows
    cfg = dataclasses.replace(model_config, n_rows=n_rows, text_dim=int(text_emb.shape[1]))
    seed_everything(train_config.seed)
    model = build_model(cfg, cs.split.train, text_emb[:n_rows])
    t0 = time.perf_counter()
    result = train_model(model, cs.split, train_config, progress=progress)
    device = resolve_device(train_config.device)
    table = full_table(result.model, text_emb, rows)
    sasrec = sasrec_table_scorer(result.model, table, device)
    metrics = evaluate_cold(cs, text_emb, sasrec)
    return {
        "split": {**cs.info, "rows": rows},
        "training": {
            "epochs": result.epochs_run,
            "best_epoch": result.best_epoch,
            "seconds": round(time.perf_counter() - t0, 1),
            "device": result.device,
            "valid_sasrec": result.best_valid,
        },
        "metrics": metrics,
    }


def format_report(report: dict[str, Any]) -> str:
    """Human-readable tables of :func:`run_cold_start`'s report."""
    from encoders.evaluate import format_table

    s, t, m = report["split"], report["training"], report["metrics"]
    head = (
        f"cold start ({s['protocol']}"
        + (f", {100 * s['holdout']:.0f}% of items held out" if s["holdout"] else "")
        + f", cold rows: {s['rows']}): {s['cold_items']} cold items "
        f"({s['cold_items_as_targets']} are targets), {s['cold_test_users']} of "
        f"{s['test_users']} test users have a cold target; catalog {s['catalog_items']} "
        f"items ({s['warm_items']} warm)"
    )
    lines = [
        head,
        f"trained {t['epochs']} epochs (best {t['best_epoch']}) in {t['seconds']}s on {t['device']}",
        "",
        "cold test users, full ranking over the whole catalog (seen excluded):",
        format_table(m["full"]),
        "",
        f"cold test users, ranking among the {s['cold_items']} cold items only:",
        format_table(m["cold_only"]),
    ]
    if "context" in m:
        lines += ["", "context (full ranking):", format_table(m["context"])]
    return "\n".join(lines)


# --- The worker's path (``streamrec evaluate --cold-start --live-path``) -----------------------------------------

CALIBRATION_GRID = {
    "neighbours": (1, 5, 10, 20, 50),
    "temperature": (0.02, 0.05, 0.1, 1.0),
    "scale": (0.0, 0.5, 1.0, 1.5, 2.0),
    "row_scale": (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25),
}
MAX_WARM_DROP = 0.015  # validation: the largest relative NDCG@10 drop of warm users a calibration may cost


def engine_ranks(
    engine: Any,
    histories: list[list[str]],
    targets: list[str],
    k: int = 10,
    item_bias: Any = None,
    batch_size: int = 256,
) -> np.ndarray:
    """0-based ranks (``inf`` below the top ``k``) of the targets in ``engine.recommend``'s lists.

    The graph masks the newest ``max_len`` history items; older ones are dropped from the list here, so each
    batch (users sorted by history length) asks for ``k`` plus the most such items in it (at most ``top_k``).
    """
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    ranks = np.full(len(histories), np.inf)
    start = 0
    while start < len(order):
        # fewer users per call when long histories ask for long lists (the engine's `because` is [B, k, max_len])
        end = min(start + batch_size, len(order))
        while end - start > 1 and (end - start) * (k + max(0, lengths[order[end - 1]] - engine.max_len)) > 32768:
            end = start + max(1, (end - start) // 2)
        chunk, start = order[start:end], end
        seqs = [histories[u] for u in chunk]
        old = max(0, max(len(s) for s in seqs) - engine.max_len)
        lists = engine.recommend(seqs, min(engine.artifact.top_k, k + old), item_bias)
        for u, seq, items in zip(chunk, seqs, lists, strict=True):
            seen = set(seq)
            ranked = [s.item_id for s in items if s.item_id not in seen][:k]
            if targets[u] in ranked:
                ranks[u] = ranked.index(targets[u])
    return ranks


def _ndcg_recall(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    m = metrics_from_ranks(ranks, k)
    return {f"ndcg@{k}": m[f"ndcg@{k}"], f"recall@{k}": m[f"recall@{k}"]}


def pseudo_cold_validation(
    model: Any,
    item_emb: np.ndarray,
    text_emb: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    valid: EvalSet,
    fraction: float,
    seed: int,
    grid: dict[str, tuple] = CALIBRATION_GRID,
    max_drop: float = MAX_WARM_DROP,
) -> dict[str, Any]:
    """Chooses the calibration on validation users only, with warm items made "pseudo-cold".

    A seeded ``fraction`` of the trained items (with text and an id part) is treated as new: removed from the
    validation histories, their rows replaced by the worker's calibrated rows computed from the *other* trained
    items (:class:`serving.text_rows.NeighbourImputer`, the worker's code) from the exported arrays. Validation users
    whose target is pseudo-cold measure the gain (NDCG@10 over the whole catalog, seen excluded); the others measure
    the cost (their NDCG@10 with the pseudo-cold rows against without them). The chosen calibration has the best
    gain among those costing warm users less than ``max_drop`` (relative). The user states do not depend on the
    replaced rows (the histories hold none), so each is encoded once with the exported table.
    """
    from serving.text_rows import Calibration, NeighbourImputer

    t0 = time.perf_counter()
    proj = text_emb @ weight + bias  # [N, dim]
    parts = item_emb - proj
    ok = (np.linalg.norm(text_emb, axis=1) > 0) & (
        np.linalg.norm(parts, axis=1) > 1e-4 * (1.0 + np.linalg.norm(item_emb, axis=1))
    )
    ok[:FIRST_ITEM_ID] = False
    candidates = np.flatnonzero(ok)
    rng = np.random.default_rng(seed + 1)
    pseudo = np.sort(rng.choice(candidates, size=max(1, round(fraction * len(candidates))), replace=False))
    rest = np.setdiff1d(candidates, pseudo)
    hists, targets = [], []
    for h, t in zip(valid.histories, valid.targets):
        kept = h[~np.isin(h, pseudo)]
        if len(kept) >= 2:
            hists.append(kept)
            targets.append(int(t))
    tgt = np.asarray(targets, dtype=np.int64)
    is_cold = np.isin(tgt, pseudo)
    dev = next(model.parameters()).device
    table = torch.from_numpy(item_emb).to(dev)
    states = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(hists), 256):
            seq = torch.from_numpy(left_pad(hists[start : start + 256], model.config.max_len)).to(dev)
            states.append(model.encode(seq, table, last_only=True)[:, -1, :].float().cpu().numpy())
    h = np.concatenate(states) if states else np.zeros((0, item_emb.shape[1]), np.float32)  # [U, dim]
    # The ranks need only each user's sorted scores of the unchanged rows (pad, unknown, seen and pseudo-cold
    # rows removed) and the scores of the pseudo-cold rows; ties count against the target (as target_ranks).
    fixed = h @ item_emb.T  # [U, N]
    target_score = fixed[np.arange(len(tgt)), tgt]  # [U] (a warm target's score; unused for cold users)
    fixed[:, :FIRST_ITEM_ID] = -np.inf
    fixed[:, pseudo] = -np.inf
    seen_target = np.zeros(len(tgt), dtype=bool)
    for u, hist in enumerate(hists):
        fixed[u, hist] = -np.inf
        seen_target[u] = tgt[u] in hist
    fixed.sort(axis=1)
    col = {int(q): c for c, q in enumerate(pseudo)}
    cold_col = np.array([col.get(int(t), 0) for t in tgt], dtype=np.int64)
    rows_u = np.arange(len(tgt))

    def fixed_at_least(t: np.ndarray) -> np.ndarray:
        return np.array([fixed.shape[1] - np.searchsorted(fixed[u], t[u]) for u in rows_u], dtype=np.float64)

    warm_fixed_ahead = fixed_at_least(target_score) - 1.0  # the target itself is among the unchanged rows
    warm_fixed_ahead[seen_target] = np.inf

    def ndcg(ranks: np.ndarray) -> float:
        return metrics_from_ranks(ranks)["ndcg@10"]

    warm_without = ndcg(warm_fixed_ahead[~is_cold])

    def measure(rows: np.ndarray) -> tuple[float, float]:
        new = h @ rows.T  # [U, |pseudo|]
        t_cold = new[rows_u, cold_col]
        cold_ahead = fixed_at_least(t_cold) + (new >= t_cold[:, None]).sum(1) - 1.0
        warm_ahead = warm_fixed_ahead + (new >= target_score[:, None]).sum(1)
        return ndcg(cold_ahead[is_cold]), ndcg(warm_ahead[~is_cold])

    plain_cold, plain_warm = measure(proj[pseudo])
    results: list[dict[str, Any]] = [{"calibration": None, "cold_ndcg@10": plain_cold, "warm_ndcg@10": plain_warm}]
    imputed: dict[tuple[int, float], np.ndarray] = {}
    for kn in grid["neighbours"]:
        for temp in grid["temperature"]:
            imputer = NeighbourImputer.from_table(item_emb, text_emb, weight, bias, Calibration(kn, temp), rows=rest)
            assert imputer is not None
            imputed[kn, temp] = imputer.id_part(text_emb[pseudo])  # scale 1
    seen: set[Calibration] = set()
    for (kn, temp), part in imputed.items():
        for scale in grid["scale"]:
            for row_scale in grid["row_scale"]:
                # without an id part the neighbours do not matter: one entry per row_scale
                cal = Calibration(kn if scale else 1, temp if scale else 1.0, scale, row_scale)
                if cal in seen or (not scale and row_scale == 1.0):
                    continue
                seen.add(cal)
                c, w = measure(row_scale * (proj[pseudo] + scale * part))
                results.append({"calibration": cal, "cold_ndcg@10": c, "warm_ndcg@10": w})
    for r in results:
        r["warm_drop"] = 1.0 - r["warm_ndcg@10"] / warm_without if warm_without > 0 else 0.0
    allowed = [r for r in results if r["warm_drop"] < max_drop] or [min(results, key=lambda r: r["warm_drop"])]
    best = max(allowed, key=lambda r: r["cold_ndcg@10"])
    chosen = best["calibration"]
    for r in results:
        r["calibration"] = dataclasses.asdict(r["calibration"]) if r["calibration"] else None
    return {
        "pseudo_cold_items": len(pseudo),
        "neighbour_pool": len(rest),
        "pseudo_cold_users": int(is_cold.sum()),
        "warm_users": int((~is_cold).sum()),
        "warm_ndcg@10_without": warm_without,
        "max_warm_drop": max_drop,
        "grid": results,
        "chosen": dataclasses.asdict(chosen) if chosen else None,
        "seconds": round(time.perf_counter() - t0, 1),
        "_calibration": chosen,
    }


def run_live_path(
    data: Interactions,
    model_config: ModelConfig,
    train_config: TrainConfig,
    text_model: Any = None,
    protocol: Protocol = "auto",
    holdout: float = 0.1,
    min_users: int = 100,
    progress: bool = True,
    model_root: Any = None,
    ort_threads: int = 0,
    grid: dict[str, tuple] = CALIBRATION_GRID,
    mix: Any = None,
) -> dict[str, Any]:
    """Cold start measured through the worker's own path (``--live-path``).

    Trains on the warm rows (``rows="appended"``), publishes the model with :func:`encoders.export.write_artifact`
    (text encoder included, and the co-occurrence blend chosen on validation as ``train`` exports it unless
    ``train_config.blend`` is off), loads it as the worker does (:func:`serving.artifact.load_artifact`,
    :class:`serving.engine.Engine` on CPU, :meth:`serving.text_rows.TextRows.load`), adds every non-warm catalog
    item that has a text with ``engine.add_items(ids, text_rows.rows(texts))`` (what ``streams.new_items`` does) and
    ranks with ``engine.recommend`` (k=10): the cold test users over the whole catalog and among the new items
    only (``item_bias`` -inf elsewhere), the warm test users with and without the new rows. Rows: ``plain``
    (``text_proj(text_emb)``, the worker's default :data:`serving.text_rows.DEFAULT_CALIBRATION`), ``imputed``
    (neighbour imputation with :class:`serving.text_rows.Calibration`'s defaults) and ``validated`` (the calibration
    :func:`pseudo_cold_validation` picks on validation users, when it is neither).

    Args:
        text_model: the text model folder (None: the packaged MiniLM).
        model_root: where the version is published (None: a temporary folder, removed afterwards).
        ort_threads: onnxruntime intra-op threads of the engines (0: one per core).
        mix: how new rows compete with trained ones (:class:`serving.mixture.NewRowMix`; None: the worker's default).
        Others as :func:`run_cold_start`.
    """
    import tempfile
    from pathlib import Path

    from encoders.export import write_artifact
    from encoders.mixture_fit import fit_new_item_temperature
    from encoders.pipeline import TextOptions, choose_blend, text_embeddings
    from encoders.train import build_model, resolve_device, seed_everything, train_model
    from serving.artifact import load_artifact
    from serving.mixture import DEFAULT_MIX
    from serving.text_rows import DEFAULT_CALIBRATION, Calibration, TextRows

    mix = mix or DEFAULT_MIX
    started = time.perf_counter()
    cs = cold_split(data, protocol, holdout, min_users, seed=train_config.seed)
    logger.info("cold split: %s", cs.info)
    device = str(resolve_device(train_config.device))
    texts = [data.items[i].full_text if i in data.items else "" for i in cs.vocab.item_ids]
    t0 = time.perf_counter()
    text_emb, text_path = text_embeddings(texts, TextOptions(True, text_model), device, progress)
    embed_seconds = time.perf_counter() - t0
    if not np.any(text_emb[cs.cold]):
        raise DataError("The cold items have no text, so nothing can rank them; give item texts.")
    n_warm = cs.n_warm_rows
    cfg = dataclasses.replace(model_config, n_rows=n_warm, text_dim=int(text_emb.shape[1]))
    seed_everything(train_config.seed)
    model = build_model(cfg, cs.split.train, text_emb[:n_warm])
    t0 = time.perf_counter()
    result = train_model(model, cs.split, train_config, progress=progress)
    train_seconds = time.perf_counter() - t0
    blend, blend_choice = choose_blend(result, cs.split, n_warm, train_config.blend, progress)  # as train exports
    model = result.model.cpu().eval()

    # publish and load the version as the worker does
    warm_ids = cs.vocab.item_ids[: n_warm - FIRST_ITEM_ID]
    warm_vocab = Vocabulary(warm_ids, cs.vocab.titles[: n_warm - FIRST_ITEM_ID])
    tmp = tempfile.TemporaryDirectory(prefix="streamrec-live-") if model_root is None else None
    root = Path(tmp.name if tmp is not None else model_root)
    try:
        fraction = max(len(cs.cold) / max(cs.vocab.n_items, 1), 0.05)
        mixture = fit_new_item_temperature(model, cs.split.valid, fraction, train_config.seed, mix=mix)
        t0 = time.perf_counter()
        version = write_artifact(
            model,
            warm_vocab,
            root,
            top_k=warm_vocab.n_items,
            training={"data": data.source, "cold_split": cs.info, "epochs": result.epochs_run},
            metrics={"valid_sasrec": result.best_valid},
            text_model=text_path,
            new_item_mixture=mixture,
            blend=blend,
        )
        export_seconds = time.perf_counter() - t0
        artifact = load_artifact(version)
        t0 = time.perf_counter()
        plain_rows = TextRows.load(artifact, calibration=None)
        if plain_rows is None:
            raise DataError(f"{version} ships no text encoder: the worker could not add new items")
        load_seconds = time.perf_counter() - t0
        new_int = [i for i in range(n_warm, cs.vocab.n_rows) if texts[i - FIRST_ITEM_ID]]
        new_texts = [texts[i - FIRST_ITEM_ID] for i in new_int]
        t0 = time.perf_counter()
        rows_plain = plain_rows.rows(new_texts)
        rows_seconds = time.perf_counter() - t0
        with torch.no_grad():
            training_rows = model.text_proj(torch.from_numpy(text_emb[new_int])).numpy()
        parity = float(np.abs(rows_plain - training_rows).max()) if new_int else 0.0

        # calibration chosen on validation users (pseudo-cold warm items), from the artifact's own arrays
        text_table = np.load(version / artifact.manifest["text"]["emb_file"])
        validation = pseudo_cold_validation(
            model,
            artifact.item_emb,
            text_table,
            plain_rows.weight,
            plain_rows.bias,
            cs.split.valid,
            fraction=fraction,
            seed=train_config.seed,
            grid=grid,
        )
        validated = validation.pop("_calibration")
        variants: dict[str, Any] = {"plain": DEFAULT_CALIBRATION, "imputed": Calibration()}
        if validated is not None and validated not in variants.values():
            variants["validated"] = validated

        t0 = time.perf_counter()
        cold_full, cold_new, warm, add_seconds = worker_metrics(
            artifact, cs, new_int, new_texts, variants, ort_threads, plain_rows, mix
        )
        engine_seconds = time.perf_counter() - t0
    finally:
        if tmp is not None:
            tmp.cleanup()

    # baselines over the same catalog (warm rows + the added items) and users
    is_cold = np.isin(cs.split.test.targets, cs.cold)
    warm_set = EvalSet(
        tuple(h for h, c in zip(cs.split.test.histories, is_cold) if not c), cs.split.test.targets[~is_cold]
    )
    catalog = np.concatenate([np.arange(FIRST_ITEM_ID, n_warm), np.asarray(new_int, dtype=np.int64)])
    new_arr = np.asarray(new_int, dtype=np.int64)
    fit = cs.split.train_valid
    pop = Popularity(fit, cs.vocab.n_rows)
    baselines: dict[str, ScoreFn] = {
        "text_similarity": text_similarity_scorer(text_emb),
        "popularity": pop.score,
    }
    for name, fn in baselines.items():
        cold_full[name] = _ndcg_recall_scorer(restrict(fn, catalog), cs.cold_test)
        cold_new[name] = _ndcg_recall_scorer(restrict(fn, new_arr), cs.cold_test)
        warm[name] = _ndcg_recall_scorer(restrict(fn, catalog), warm_set)
    cold_new["random_expected"] = {
        key: v for key, v in expected_random(len(new_int)).items() if key in ("ndcg@10", "recall@10")
    }
    base = warm["sasrec_without_new_rows"]["ndcg@10"]
    ranked = [key.removeprefix("sasrec_") for key in cold_full if key.startswith("sasrec_")]
    drops = {name: (1.0 - warm[f"sasrec_{name}"]["ndcg@10"] / base) if base > 0 else 0.0 for name in ranked}
    return {
        "split": {**cs.info, "rows": "appended", "path": "worker", "new_items_added": len(new_int)},
        "training": {
            "epochs": result.epochs_run,
            "best_epoch": result.best_epoch,
            "seconds": round(train_seconds, 1),
            "device": result.device,
            "valid_sasrec": result.best_valid,
            "blend": blend_choice,
        },
        "worker_path": {
            "version": artifact.version,
            "calibrations": {name: (dataclasses.asdict(c) if c else None) for name, c in variants.items()},
            "new_row_mix": dataclasses.asdict(mix),
            "new_item_mixture": artifact.manifest["text"].get("mixture"),
            "rows_parity_max_abs": parity,
            "seconds": {
                "embed_catalog_text_torch": round(embed_seconds, 1),
                "export": round(export_seconds, 1),
                "load_text_encoder": round(load_seconds, 1),
                "text_rows_plain": round(rows_seconds, 2),
                "add_items_with_rows": add_seconds,
                "engines": round(engine_seconds, 1),
            },
        },
        "validation": validation,
        "metrics": {
            "cold_full": cold_full,
            "cold_among_new": cold_new,
            "warm": warm,
            "warm_ndcg_drop_relative": drops,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "text_model": text_path,
    }


def worker_metrics(
    artifact: Any,
    cs: ColdSplit,
    new_int: list[int],
    new_texts: list[str],
    variants: dict[str, Any],
    ort_threads: int = 0,
    plain_rows: Any = None,
    mix: Any = None,
) -> tuple[dict, dict, dict, dict]:
    """The engine's metrics for a published warm-rows version (see :func:`run_live_path`).

    Args:
        artifact: the version, as :func:`serving.artifact.load_artifact` reads it (its rows = ``cs``'s warm rows).
        cs: the cold split.
        new_int: internal ids (in ``cs.vocab``) of the items the worker adds, with their texts ``new_texts``.
        variants: name -> :class:`serving.text_rows.Calibration` or None (plain rows).
        ort_threads: onnxruntime intra-op threads.
        plain_rows: an uncalibrated :class:`serving.text_rows.TextRows` of the version (loaded when None).
        mix: how every variant's new rows compete with the trained ones (:class:`serving.mixture.NewRowMix`, the
            worker's default when None); ``plain_raw`` is the plain rows ranked by their raw scores.

    Returns:
        ``cold_full``, ``cold_among_new``, ``warm`` (``sasrec_without_new_rows`` and one entry per variant) and the
        seconds each ``add_items`` (rows computed from the texts included) took.
    """
    from serving.engine import Engine
    from serving.mixture import DEFAULT_MIX
    from serving.text_rows import TextRows

    mix = mix or DEFAULT_MIX
    new_ids = [cs.vocab.external(i) for i in new_int]

    def external(h: np.ndarray) -> list[str]:
        return [cs.vocab.external(int(i)) for i in h]

    cold_h = [external(h) for h in cs.cold_test.histories]
    cold_t = [cs.vocab.external(int(t)) for t in cs.cold_test.targets]
    is_cold = np.isin(cs.split.test.targets, cs.cold)
    warm_h = [external(h) for h, c in zip(cs.split.test.histories, is_cold) if not c]
    warm_t = [cs.vocab.external(int(t)) for t in cs.split.test.targets[~is_cold]]
    trained_rows = artifact.item_emb.shape[0]

    def new_only(rows: Any) -> np.ndarray:
        b = np.full(len(rows), -np.inf, dtype=np.float32)
        b[trained_rows:] = 0.0
        return b

    cold_full, cold_new, warm, add_seconds = {}, {}, {}, {}
    engine = Engine(artifact, device="cpu", threads=ort_threads)
    warm["sasrec_without_new_rows"] = _ndcg_recall(engine_ranks(engine, warm_h, warm_t))
    runs = [(name, cal, mix) for name, cal in variants.items()]
    runs.insert(1, ("plain_raw", None, None))  # the plain rows ranked by their raw scores, as before the mixture
    for name, cal, ranking in runs:
        engine = Engine(artifact, device="cpu", threads=ort_threads, new_rows=ranking)
        if cal is None:
            encoder = plain_rows or TextRows.load(artifact, calibration=None)
        else:
            encoder = TextRows.load(artifact, calibration=cal)
        assert encoder is not None
        t1 = time.perf_counter()
        added = engine.add_items(new_ids, encoder.rows(new_texts))
        add_seconds[name] = round(time.perf_counter() - t1, 2)
        assert added == len(new_ids)
        key = f"sasrec_{name}"
        cold_full[key] = _ndcg_recall(engine_ranks(engine, cold_h, cold_t))
        cold_new[key] = _ndcg_recall(engine_ranks(engine, cold_h, cold_t, item_bias=new_only))
        warm[key] = _ndcg_recall(engine_ranks(engine, warm_h, warm_t))
    return cold_full, cold_new, warm, add_seconds


def _ndcg_recall_scorer(fn: ScoreFn, eval_set: EvalSet) -> dict[str, float]:
    m = evaluate_scorer(fn, eval_set)
    return {"ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"]}


def format_live_report(report: dict[str, Any]) -> str:
    """Human-readable tables of :func:`run_live_path`'s report."""
    from encoders.evaluate import format_table

    s, t, w, m = report["split"], report["training"], report["worker_path"], report["metrics"]
    v = report["validation"]
    lines = [
        f"cold start through the worker's path ({s['protocol']}"
        + (f", {100 * s['holdout']:.0f}% of items held out" if s["holdout"] else "")
        + f"): {s['new_items_added']} new items added to the engine, {s['cold_test_users']} of {s['test_users']} "
        f"test users have a cold target; catalog {s['catalog_items']} items ({s['warm_items']} warm)",
        f"trained {t['epochs']} epochs (best {t['best_epoch']}) in {t['seconds']}s on {t['device']}; "
        f"version {w['version']}; plain rows vs training's text_proj(text_emb): max abs {w['rows_parity_max_abs']:.1e}",
        "co-occurrence blend: "
        + (f"weight {t['blend']['weight']:g}, chosen on validation" if t.get("blend") else "off (--no-blend)"),
        "calibrations: " + ", ".join(f"{k}={c}" for k, c in w["calibrations"].items()),
        f"validation (pseudo-cold: {v['pseudo_cold_items']} warm items, {v['pseudo_cold_users']} users; "
        f"{v['warm_users']} warm users at NDCG@10 {v['warm_ndcg@10_without']:.4f} without them): chosen {v['chosen']}",
        "",
        "cold test users, whole catalog (engine.recommend, seen excluded):",
        format_table(m["cold_full"]),
        "",
        f"cold test users, among the {s['new_items_added']} new items only:",
        format_table(m["cold_among_new"]),
        "",
        "warm test users, whole catalog:",
        format_table(m["warm"]),
        "warm NDCG@10 drop (relative) from adding the new rows: "
        + ", ".join(f"{k} {100 * d:.2f}%" for k, d in m["warm_ndcg_drop_relative"].items()),
        f"total {report['seconds']}s",
    ]
    return "\n".join(lines)

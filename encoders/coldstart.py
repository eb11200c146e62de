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
from encoders.evaluate import ScoreFn, evaluate_scorer
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

"""Chooses, on validation users only, the temperature with which a version's new items compete (serving/mixture.py).

The scale of the text rows' scores against the trained rows' differs from model to model, so one temperature does not
suit every version (measured in docs/model.md: 1.5 suits the simulator, and keeps almost every new movie out of the
ML-1M lists). Here a seeded ``fraction`` of the trained items is made "pseudo-new": removed from the validation
histories, their rows replaced by the plain text rows the worker would compute (``text_proj(text_emb)``). Validation
users whose target is pseudo-new measure the gain (NDCG@10 over the whole catalog, seen excluded), the others the
cost (their NDCG@10 against the catalog without the pseudo-new rows). The chosen temperature has the best gain among
those costing the other users less than ``max_drop`` (relative); the manifest's ``text.mixture`` records it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from encoders.config import FIRST_ITEM_ID
from encoders.evaluate import metrics_from_ranks, target_ranks
from encoders.export import mix_new_rows
from encoders.split import EvalSet, left_pad
from serving.mixture import NewRowMix

logger = logging.getLogger(__name__)

TEMPERATURES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
MAX_DROP = 0.02  # the largest relative NDCG@10 drop of the other validation users a temperature may cost
FRACTION = 0.1  # the share of trained items made pseudo-new


def fit_new_item_temperature(
    model: Any,
    valid: EvalSet,
    fraction: float = FRACTION,
    seed: int = 0,
    temperatures: tuple[float, ...] = TEMPERATURES,
    max_drop: float = MAX_DROP,
    mix: NewRowMix | None = None,
    batch_size: int = 512,
) -> dict[str, Any] | None:
    """The temperature for a model with text rows, chosen on ``valid`` (see the module); None without text rows.

    ``mix``: the share rule and mass the worker will use (its defaults when None); the share is what ``auto`` gives a
    catalog whose new items are ``fraction`` of it.
    """
    if getattr(model, "text_proj", None) is None:
        return None
    started = time.perf_counter()
    mix = mix or NewRowMix()
    model = model.eval()
    dev = next(model.parameters()).device
    with torch.no_grad():
        table = model.item_table().float().cpu().numpy()
        text_rows = model.text_proj(model.text_emb.float()).float().cpu().numpy()
    n_rows = table.shape[0]
    candidates = np.flatnonzero(np.linalg.norm(model.text_emb.detach().float().cpu().numpy(), axis=1) > 0)
    candidates = candidates[candidates >= FIRST_ITEM_ID]
    if len(candidates) < 10:
        return None
    rng = np.random.default_rng(seed + 7)
    pseudo = np.sort(rng.choice(candidates, size=max(1, round(fraction * len(candidates))), replace=False))
    is_new = np.zeros(n_rows, dtype=bool)
    is_new[pseudo] = True
    scored = table.copy()
    scored[pseudo] = text_rows[pseudo]
    share = mix.share_for(n_rows - FIRST_ITEM_ID, len(pseudo))

    histories, targets = [], []
    for h, t in zip(valid.histories, valid.targets, strict=True):
        kept = h[~is_new[h]]
        if len(kept) >= 1:
            histories.append(kept)
            targets.append(int(t))
    if not histories:
        return None
    target = np.asarray(targets, dtype=np.int64)
    cold = is_new[target]
    item_new = torch.from_numpy(is_new.astype(np.float64))
    ranks: dict[float, list[np.ndarray]] = {t: [] for t in temperatures}
    without: list[np.ndarray] = []  # the catalog without the pseudo-new rows
    table_t = torch.from_numpy(table).to(dev)
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        tgt = target[start : start + batch_size]
        with torch.no_grad():
            seq = torch.from_numpy(left_pad(chunk, model.config.max_len)).to(dev)
            h = model.encode(seq, table_t, last_only=True)[:, -1, :].float().cpu().numpy()
        s = (h @ scored.T).astype(np.float64)
        s[:, :FIRST_ITEM_ID] = -np.inf
        for row, items in enumerate(chunk):
            s[row, items] = -np.inf  # seen: excluded before the mixture, as the graph's seen penalty
        without.append(target_ranks(np.where(is_new, -np.inf, s), tgt, chunk))
        for temp in temperatures:
            mixed = mix_new_rows(
                torch.from_numpy(s), item_new, torch.tensor([share, temp, mix.mass], dtype=torch.float64)
            )
            ranks[temp].append(target_ranks(mixed.numpy(), tgt, chunk))  # the graph's own mixture

    def ndcg(r: np.ndarray) -> float:
        return metrics_from_ranks(r)["ndcg@10"]

    n_cold, n_warm = int(cold.sum()), int((~cold).sum())
    base = ndcg(np.concatenate(without)[~cold])
    grid = []
    for temp, parts in ranks.items():
        r = np.concatenate(parts)
        drop = 1.0 - ndcg(r[~cold]) / base if base > 0 else 0.0
        # plain floats: the dict goes into the checkpoint, which torch loads with weights_only
        grid.append({"temperature": float(temp), "new_ndcg@10": ndcg(r[cold]), "other_drop": float(drop)})
    allowed = [g for g in grid if g["other_drop"] < max_drop] or [min(grid, key=lambda g: g["other_drop"])]
    best = max(allowed, key=lambda g: (g["new_ndcg@10"], g["temperature"]))
    result = {
        "temperature": best["temperature"],
        "validation": {
            "pseudo_new_items": len(pseudo),
            "share": round(float(share), 4),
            "mass": float(mix.mass),
            "users_with_a_pseudo_new_target": n_cold,
            "other_users": n_warm,
            "other_ndcg@10_without": base,
            "max_drop": max_drop,
            "grid": grid,
            "seconds": round(time.perf_counter() - started, 1),
        },
    }
    logger.info(
        "new items' temperature %.2f chosen on validation (%d pseudo-new items, %d users: NDCG@10 %.4f, "
        "others -%.2f%%)",
        best["temperature"],
        len(pseudo),
        n_cold,
        best["new_ndcg@10"],
        100 * best["other_drop"],
    )
    return result

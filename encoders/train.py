"""Training loop: next-item cross-entropy at every position, AdamW, early stopping."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from encoders.averaging import WeightAverage
from encoders.config import FIRST_ITEM_ID, PAD_ID, UNK_ID, ModelConfig, TrainConfig
from encoders.evaluate import evaluate_scorer, model_scorer
from encoders.loss import full_softmax_ce
from encoders.sasrec import SASRec
from encoders.split import Split, left_pad
from serving.behaviour import OTHER

logger = logging.getLogger(__name__)

SELECT_METRIC = "ndcg@10"


class _Best(NamedTuple):
    """The best validated state so far (optimizer state only when a learning-rate cut needs it)."""

    score: float
    epoch: int
    valid: dict[str, float]
    weights: dict[str, torch.Tensor]
    opt_state: dict | None


def _snapshot(
    score: float, epoch: int, valid: dict[str, float], model: SASRec, opt: torch.optim.Optimizer, cfg: TrainConfig
) -> _Best:
    return _Best(
        score,
        epoch,
        valid,
        copy.deepcopy(model.state_dict()),
        copy.deepcopy(opt.state_dict()) if cfg.lr_drops else None,
    )


@dataclass
class TrainResult:
    """What a training run produced: the best model (restored) and its history."""

    model: SASRec
    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    seconds: float
    device: str
    history: list[dict] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        """Mean wall time of one epoch, validation included."""
        return self.seconds / max(self.epochs_run, 1)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names are passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available here: use --device cpu (or auto).")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(config: ModelConfig, train_seqs: tuple[np.ndarray, ...], text_emb: np.ndarray | None) -> SASRec:
    """Creates a SASRec; with text, loads the text table and marks never-trained items.

    Args:
        config: model config (``n_rows`` set; ``text_dim`` matching ``text_emb``).
        train_seqs: training sequences; items absent from them get text-only rows.
        text_emb: ``[n_rows, text_dim]`` item text embeddings or None.
    """
    model = SASRec(config)
    if text_emb is not None:
        if text_emb.shape != (config.n_rows, config.text_dim):
            raise ValueError(f"text_emb is {text_emb.shape}, expected {(config.n_rows, config.text_dim)}")
        counts = np.bincount(np.concatenate(list(train_seqs)), minlength=config.n_rows)
        id_mask = (counts[: config.n_rows] > 0).astype(np.float32)
        id_mask[UNK_ID] = 1.0
        with torch.no_grad():
            model.text_emb.copy_(torch.from_numpy(text_emb))
            model.id_mask.copy_(torch.from_numpy(id_mask).unsqueeze(1))
    return model


def refit_model(
    config: ModelConfig,
    split: Split,
    text_emb: np.ndarray | None,
    cfg: TrainConfig,
    epochs: int,
    progress: bool = True,
) -> TrainResult:
    """A fresh model trained on everything but the test targets for ``epochs`` epochs (chosen on validation by an
    earlier run), at the base learning rate, same seed; nothing is validated (the validation targets are in)."""
    seed_everything(cfg.seed)
    model = build_model(config, split.train_valid, text_emb)
    once = dataclasses.replace(
        cfg, epochs=epochs, eval_every=epochs, patience=epochs + 1, lr_drops=0, max_minutes=0.0, refit=False
    )
    return train_model(model, split.refit(), once, progress)


def _training_arrays(
    train_seqs: tuple[np.ndarray, ...],
    max_len: int,
    windows: bool,
    behaviour: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Training samples: inputs ``seq[:-1]`` and targets ``seq[1:]``, left-padded to ``max_len``.

    Args:
        train_seqs: training sequences (users with fewer than 2 items are skipped).
        max_len: sample length.
        windows: cut a history longer than ``max_len`` into consecutive windows, newest first,
            so every training event is a target once per epoch; False keeps only the newest
            ``max_len`` (one sample per user).
        behaviour: optional ``[T, 2]`` behaviour ids aligned with ``train_seqs``: the inputs' behaviour.

    Returns:
        ``inputs`` and ``targets``, both ``[S, max_len]``, and the inputs' behaviour ``[S, max_len, 2]`` (or None).
    """
    inputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    steps: list[np.ndarray] = []
    for user, seq in enumerate(train_seqs):
        ends = range(len(seq) - 1, 0, -max_len)  # newest window first
        for end in ends if windows else ends[:1]:
            # the window predicts seq[start + 1:end + 1] from seq[start:end]
            start = max(end - max_len, 0)
            inputs.append(seq[start:end])
            targets.append(seq[start + 1 : end + 1])
            if behaviour is not None:
                steps.append(behaviour[user][start:end])
    padded_steps = left_pad(steps, max_len) if behaviour is not None else None
    return left_pad(inputs, max_len), left_pad(targets, max_len), padded_steps  # [S, L], [S, L], [S, L, 2]


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 32) -> Iterator[np.ndarray]:
    """Shuffled batches of similar lengths: users are shuffled, sorted by length within pools
    of ``pool`` batches, cut into batches, and the batches shuffled (less padding to crop)."""
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = order[start : start + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    for k in rng.permutation(len(batches)):
        yield batches[k]


def sequence_loss(
    model: SASRec,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    cfg: TrainConfig,
    behaviour: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the next item at every non-padded position.

    ``ce``: softmax over the whole catalog (rows 2..N-1). ``sampled``: softmax over the target
    and ``n_negatives`` uniform items shared by the batch (accidental hits masked). ``behaviour``: the inputs'
    ``[B, L, 2]`` behaviour ids, for a model that reads them.
    """
    table = model.item_table(cfg.id_dropout)  # [N, D]
    bf16 = cfg.precision == "bf16"
    with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=bf16):
        h = model.encode(inputs, table, behaviour=behaviour).float()  # [B, L, D]
    mask = targets != PAD_ID  # [B, L]
    h, tgt = h[mask], targets[mask]  # [M, D], [M]
    if cfg.loss == "ce":  # softmax over catalog rows 2..N-1, logits [M, N-2] in chunks
        return full_softmax_ce(
            h,
            table[FIRST_ITEM_ID:],
            tgt - FIRST_ITEM_ID,
            chunk=1024,
            matmul_dtype=torch.bfloat16 if bf16 else torch.float32,
        )
    negs = torch.randint(FIRST_ITEM_ID, table.shape[0], (cfg.n_negatives,), device=h.device)
    pos = (h * table[tgt]).sum(-1, keepdim=True)  # [M, 1]
    neg = h @ table[negs].T  # [M, K]
    neg = neg.masked_fill(negs.unsqueeze(0) == tgt.unsqueeze(1), float("-inf"))  # [M, K]
    logits = torch.cat([pos, neg], dim=1)  # [M, 1 + K]
    return F.cross_entropy(logits, torch.zeros_like(tgt))


def train_model(model: SASRec, split: Split, cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Trains with AdamW and early stopping on validation NDCG@10; restores the best weights.

    A validation plateau (``cfg.patience`` validations without a better NDCG@10) stops the
    run, unless ``cfg.lr_drops`` cuts are left: then the best weights and optimizer state come
    back and the learning rate is multiplied by ``cfg.lr_drop_factor``. With ``cfg.ema_decay``
    the moving average of the weights is what is validated and kept.

    Args:
        model: a freshly built model (see :func:`build_model`).
        split: leave-last-out split of internal-id sequences.
        cfg: training config.
        progress: show a tqdm bar (loss and validation metrics).
    """
    device = resolve_device(cfg.device)
    model.to(device)
    rng = np.random.default_rng(cfg.seed)
    use_behaviour = bool(model.config.n_types) and split.train_behaviour is not None
    inputs_np, targets_np, behaviour_np = _training_arrays(
        split.train, model.config.max_len, cfg.windows, split.train_behaviour if use_behaviour else None
    )
    if len(inputs_np) == 0:
        raise ValueError("no user has 2 or more training items; the data set is too small.")
    lengths = (inputs_np != PAD_ID).sum(1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = _snapshot(-1.0, 0, {}, model, opt, cfg)
    history: list[dict] = []
    since_best, lr, drops_left = 0, cfg.lr, cfg.lr_drops
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    t0 = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), desc="train", unit="epoch", disable=not progress)
    epoch = 0
    for epoch in bar:
        t_epoch = time.perf_counter()
        model.train()
        total, steps = 0.0, 0
        for idx in _batches(lengths, cfg.batch_size, rng):
            crop = int(lengths[idx].max())  # drop columns that are padding in every row
            inputs = torch.from_numpy(inputs_np[idx, -crop:]).to(device)
            targets = torch.from_numpy(targets_np[idx, -crop:]).to(device)
            behaviour = None if behaviour_np is None else torch.from_numpy(behaviour_np[idx, -crop:]).to(device)
            if cfg.unk_prob > 0:
                drop = (torch.rand(inputs.shape, device=device) < cfg.unk_prob) & (inputs != PAD_ID)
                inputs = inputs.masked_fill(drop, UNK_ID)
                if behaviour is not None:  # as often, a position's behaviour is "other" (e.g. state from before it)
                    lost = (torch.rand(behaviour.shape, device=device) < cfg.unk_prob) & (behaviour != PAD_ID)
                    behaviour = behaviour.masked_fill(lost, OTHER)
            loss = sequence_loss(model, inputs, targets, cfg, behaviour)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if average is not None:
                average.update()
            total, steps = total + loss.item(), steps + 1
            bar.set_postfix(loss=f"{total / steps:.4f}", refresh=False)
        record = {"epoch": epoch, "loss": total / max(steps, 1), "lr": lr}
        out_of_time = cfg.max_minutes and time.perf_counter() - t0 > 60.0 * cfg.max_minutes
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs or out_of_time:
            with average.applied() if average else contextlib.nullcontext():
                valid = evaluate_scorer(model_scorer(model, device), split.valid)
                improved = valid[SELECT_METRIC] > best.score
                if improved:
                    best = _snapshot(valid[SELECT_METRIC], epoch, valid, model, opt, cfg)
            record.update({f"val_{k}": v for k, v in valid.items()})
            since_best = 0 if improved else since_best + 1
            bar.set_postfix(
                loss=f"{record['loss']:.4f}",
                val_ndcg10=f"{valid['ndcg@10']:.4f}",
                val_r10=f"{valid['recall@10']:.4f}",
                best=best.epoch,
            )
        record["seconds"] = time.perf_counter() - t_epoch
        history.append(record)
        logger.info("epoch %s", {k: round(v, 5) if isinstance(v, float) else v for k, v in record.items()})
        if since_best >= cfg.patience and drops_left:
            drops_left, since_best, lr = drops_left - 1, 0, lr * cfg.lr_drop_factor
            model.load_state_dict(best.weights)
            opt.load_state_dict(best.opt_state)
            if average is not None:
                average.reset()
            for group in opt.param_groups:
                group["lr"] = lr
            logger.info("plateau at epoch %d: back to epoch %d, learning rate %.3g", epoch, best.epoch, lr)
        elif since_best >= cfg.patience:
            logger.info("early stop at epoch %d (best epoch %d)", epoch, best.epoch)
            break
        if out_of_time:
            logger.info(
                "time budget of %.1f min used after epoch %d (best epoch %d)", cfg.max_minutes, epoch, best.epoch
            )
            break
    bar.close()
    model.load_state_dict(best.weights)
    model.eval()
    return TrainResult(
        model=model,
        best_epoch=best.epoch,
        best_valid=best.valid,
        epochs_run=epoch,
        seconds=time.perf_counter() - t0,
        device=str(device),
        history=history,
    )

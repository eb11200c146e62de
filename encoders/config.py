"""Typed, frozen configuration of the SASRec model and of its training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeVar

PAD_ID = 0
UNK_ID = 1
FIRST_ITEM_ID = 2
_Config = TypeVar("_Config", bound="DictConfig")


class DictConfig:
    """``to_dict``/``from_dict`` for the frozen config dataclasses (manifest and checkpoints)."""

    def to_dict(self) -> dict[str, Any]:
        """Returns the config as a JSON-friendly dict."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_Config], d: dict[str, Any]) -> _Config:
        """Builds a config from :meth:`to_dict` output (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class ModelConfig(DictConfig):
    """SASRec hyper-parameters.

    Attributes:
        n_rows: rows of the item embedding table (``n_items + 2``: pad, unknown, items);
            0 = not known yet (filled in from the data before the model is built).
        max_len: length of the left-padded input sequence.
        dim: embedding and hidden size.
        n_layers: Transformer blocks.
        n_heads: attention heads (must divide ``dim``).
        dropout: dropout on embeddings, attention weights and feed-forward outputs.
        text_dim: size of the item text embeddings fused into the item table (0 = no text).
        n_types: rows of the event-type embedding added at every position (padding, "other", the data's
            types: ``serving.behaviour.Behaviours``); 0 = the model reads items only.
        n_scenarios: rows of the scenario embedding, likewise (0 with ``n_types`` 0).
        init_std: standard deviation of the normal initialisation of the item and position
            embeddings (0.02, as in the published SASRec+CE code; on MovieLens-1M it reached a
            given validation NDCG@10 in about half the epochs of ``dim ** -0.5``).
    """

    n_rows: int = 0
    max_len: int = 50
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 1
    dropout: float = 0.2
    text_dim: int = 0
    init_std: float = 0.02
    n_types: int = 0
    n_scenarios: int = 0

    def __post_init__(self) -> None:
        if self.init_std <= 0:
            raise ValueError(f"init_std must be positive, not {self.init_std}")
        if self.n_rows and self.n_rows < FIRST_ITEM_ID + 1:
            raise ValueError("the model needs at least one catalog item (n_rows >= 3)")
        if min(self.max_len, self.dim, self.n_layers, self.n_heads) < 1:
            raise ValueError("max_len, dim, n_layers and n_heads must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if bool(self.n_types) != bool(self.n_scenarios) or min(self.n_types, self.n_scenarios) < 0:
            raise ValueError("n_types and n_scenarios are both 0 (no behaviour) or both positive")
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} must be a multiple of n_heads={self.n_heads}")


@dataclass(frozen=True)
class TrainConfig(DictConfig):
    """Training hyper-parameters.

    Attributes:
        epochs: maximum number of epochs.
        batch_size: users per batch.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        loss: ``"ce"`` (full softmax over the catalog) or ``"sampled"`` (sampled softmax).
        n_negatives: shared uniform negatives per batch for the sampled softmax.
        patience: stop after this many evaluations without a better validation NDCG@10.
        eval_every: validate every this many epochs.
        id_dropout: probability to drop an item's id embedding (text-only row) per batch, so
            the text projection alone is a usable cold-start embedding. Only with text.
        unk_prob: probability to replace an input item by the unknown id, so row 1 is trained.
        seed: random seed (model init, shuffling, dropout).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        top_k: number of items the exported graph returns.
        max_minutes: stop after the epoch that crosses this wall-clock budget (0 = no limit);
            the best validated weights are kept as usual.
        precision: ``"fp32"``, or ``"bf16"``: the Transformer runs under bfloat16 autocast and
            the softmax matmuls in bfloat16 (log-sum-exp, softmax, weights and optimizer stay
            float32). Several times faster on CPUs with bfloat16 instructions (AVX512-BF16,
            AMX) and on recent GPUs.
        windows: a history longer than ``max_len`` is cut into consecutive ``max_len`` windows
            so every training event is a target; False trains on the newest ``max_len`` only.
        lr_drops: how many times a validation plateau cuts the learning rate instead of
            stopping: after ``patience`` validations without a better NDCG@10 the best weights
            and optimizer state are restored and the rate multiplied by ``lr_drop_factor``;
            the plateau after the last cut stops training (0 = stop at the first plateau).
        lr_drop_factor: the factor of each cut, in (0, 1).
        ema_decay: validate and keep an exponential moving average of the weights, updated
            after every step with this decay (0 = off; 0.99 averages about the last 100 steps).
        refit: after the run, train a fresh model on everything but the test targets (the validation
            targets included) for the best run's number of epochs, at the base learning rate, and keep
            that one (see ``encoders.recipe``).
        blend: choose on validation how much item-to-item co-occurrence to blend into the scores
            (``encoders.blend``; the weight may be 0); False: the model alone.
    """

    epochs: int = 200
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    loss: Literal["ce", "sampled"] = "ce"
    n_negatives: int = 256
    patience: int = 10
    eval_every: int = 1
    id_dropout: float = 0.1
    unk_prob: float = 0.01
    seed: int = 42
    device: str = "auto"
    top_k: int = 100
    max_minutes: float = 0.0
    precision: Literal["fp32", "bf16"] = "fp32"
    windows: bool = True
    lr_drops: int = 0
    lr_drop_factor: float = 0.3
    ema_decay: float = 0.0
    refit: bool = False
    blend: bool = True

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', not {self.precision!r}")
        if self.loss not in ("ce", "sampled"):
            raise ValueError(f"loss must be 'ce' or 'sampled', not {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.top_k < 1:
            raise ValueError("epochs, batch_size and top_k must be positive")
        if self.lr_drops < 0 or not 0.0 < self.lr_drop_factor < 1.0:
            raise ValueError(
                f"lr_drops must be >= 0 and lr_drop_factor in (0, 1), not {self.lr_drops} and {self.lr_drop_factor}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), not {self.ema_decay}")

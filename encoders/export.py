"""ONNX export: SASRec user encoder + scorer + seen-item masking + top-k in one graph."""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from encoders.blend import Blend
from encoders.config import FIRST_ITEM_ID, PAD_ID, UNK_ID
from encoders.sasrec import SASRec
from encoders.vocab import Vocabulary
from serving.artifact import (
    BEHAVIOUR_INPUTS,
    INPUTS,
    ITEM_EMB_FILE,
    ITEMS_FILE,
    LIST_LENGTH_INPUT,
    MODEL_FILE,
    NEW_ROW_INPUTS,
    OUTPUTS,
    TEXT_EMB_FILE,
    TEXT_PROJ_FILE,
)
from serving.behaviour import OTHER, Behaviours
from serving.publish import new_tmp_dir, publish

logger = logging.getLogger(__name__)

OPSET = 18


class ScoringGraph(nn.Module):
    """What ``model.onnx`` computes; the item table is an input, not a weight.

    Args:
        model: a trained SASRec (put in eval mode).
        top_k: number of items returned per user.
        blend: co-occurrence blended into the trained rows' scores (:mod:`encoders.blend`; its followers are
            constants of the graph).
    """

    def __init__(self, model: SASRec, top_k: int, blend: Blend | None = None, conditional: bool = True) -> None:
        super().__init__()
        self.model = model.eval()
        self.top_k = top_k
        self.blend = blend.module(model.config.max_len) if blend is not None else None
        self.conditional = conditional

    def forward(
        self,
        item_seq: torch.Tensor,
        item_emb: torch.Tensor,
        item_bias: torch.Tensor,
        seen_penalty: torch.Tensor,
        item_new: torch.Tensor | None = None,
        new_mix: torch.Tensor | None = None,
        type_seq: torch.Tensor | None = None,
        scenario_seq: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and ranks the catalog.

        Args:
            item_seq: ``[B, L]`` int64 left-padded internal ids.
            item_emb: ``[N, D]`` float32 item table (input embedding and scorer).
            item_bias: ``[N]`` float32 added to every score (-inf: never recommend).
            seen_penalty: ``[1]`` float32 added per occurrence to each item of ``item_seq``.
            item_new: ``[N]`` float32, 1 on the rows added while serving (new items, from their text), else 0.
            new_mix: ``[3]`` float32 ``(share, temperature, mass)`` of :func:`mix_new_rows`.
            type_seq: ``[B, L]`` int64 event-type ids of the positions (a model that reads behaviour only).
            scenario_seq: ``[B, L]`` int64 scenario ids of the positions (likewise).

        Returns:
            ``top_scores`` ``[B, K]`` descending and ``top_ids`` ``[B, K]`` int64.
        """
        behaviour = None
        if type_seq is not None and scenario_seq is not None:
            behaviour = torch.stack([type_seq, scenario_seq], dim=-1)  # [B, L, 2]
        h = self.model.encode(item_seq, item_emb, last_only=True, behaviour=behaviour)[:, -1, :]  # [B, D]
        scores = h @ item_emb.T + item_bias  # [B, N]
        penalty = torch.zeros_like(item_seq, dtype=scores.dtype) + seen_penalty  # [B, L]
        scores = scores.scatter_add(1, item_seq, penalty)  # [B, N]
        mixing = item_new is not None and new_mix is not None
        if not mixing:
            if self.blend is not None:
                blended = self.blend.blended(item_seq, scores)  # [B, N]
                return self._blended_with_new_rows(scores, blended, torch.zeros_like(item_bias))
            return torch.topk(scores, self.top_k, dim=1)  # [B, K], [B, K]
        # the followers are looked up here, once: in the branches their constants would be written twice
        follow = self.blend.followers(item_seq) if self.blend is not None else ()
        operands = (scores, item_new, new_mix, *follow)
        if self.conditional:
            out = torch.cond(item_new.sum() > 0.5, self._with_new_rows, self._without_new_rows, operands)
        else:
            out = self._with_new_rows(*operands)
        if self.blend is not None:
            return self._blended_with_new_rows(out[0], out[1], item_new)
        return torch.topk(out[0], self.top_k, dim=1)  # [B, K], [B, K]

    def _with_new_rows(
        self, scores: torch.Tensor, item_new: torch.Tensor, new_mix: torch.Tensor, *follow: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """The mixture's scores ``[B, N]`` and, with a blend (``follow``: its followers of the call), the blended
        trained scores ``[B, N]`` (new rows -inf)."""
        mixed = mix_new_rows(scores, item_new, new_mix)
        if self.blend is None:
            return (mixed,)
        only_trained = torch.where(item_new > 0.5, float("-inf"), 0.0)  # [N]
        return mixed, self.blend.add_at(scores + only_trained, *follow)

    def _without_new_rows(
        self, scores: torch.Tensor, item_new: torch.Tensor, new_mix: torch.Tensor, *follow: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """:meth:`_with_new_rows` for a catalog without new rows: the mixture changes no score, nothing to mask."""
        if self.blend is None:
            return (scores.clone(),)
        return scores.clone(), self.blend.add_at(scores, *follow)

    def _blended_with_new_rows(
        self, mixed: torch.Tensor, blended: torch.Tensor, item_new: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The list when co-occurrence is blended in: the blend orders the trained rows, the model's own mixture
        says where new rows enter.

        The k best trained scores of the mixture without the blend (the model's own, calibrated as the new rows'
        temperature was chosen) are handed out to the trained rows in the blended order; new rows keep their
        mixture scores. So a new item is ranked exactly where it would be without the blend, which sharpens the
        trained distribution far beyond calibration (with it, a new item would crowd the tail of every list), and
        the trained rows come in the order validation chose. Without new rows (or in a graph without the
        mixture's inputs) this is the blended order with the model's own values: a returned score is always on
        the model's scale.
        """
        top_scores, top_ids = torch.topk(mixed, self.top_k, dim=1)  # [B, K]: the list without the blend
        _, trained_ids = torch.topk(blended, self.top_k, dim=1)  # [B, K]: trained, blended order (new rows -inf)
        is_trained = item_new[top_ids] < 0.5  # [B, K]: the list's trained slots, filled in the blended order
        nth = (torch.cumsum(is_trained.to(torch.int64), dim=1) - 1).clamp(min=0)
        return top_scores, torch.where(is_trained, torch.gather(trained_ids, 1, nth), top_ids)


def mix_new_rows(scores: torch.Tensor, item_new: torch.Tensor, new_mix: torch.Tensor) -> torch.Tensor:
    """Ranks trained and new rows as one mixture: ``P(j) = (1 - share) P_trained(j) + share P_new(j)``.

    ``P_trained`` is the softmax over the trained rows (after the bias and the seen penalty). ``P_new`` is the
    softmax over the new rows' logits divided by ``temperature``, beside one more outcome, "none of these": a
    pseudo-row whose logit is ``log(mass * sum exp(trained logits))``, divided by ``temperature`` as well. So a lone
    new item is likely only for users whose scores put it near their trained favourites, and with many new items
    the pseudo-row hardly matters. Adding a constant to every logit changes no list. The trained rows keep their
    scores (a catalog without new rows ranks and scores exactly as without the mixture); a new row's score is its
    scaled logit moved by the user's log-odds, so sorting all scores sorts the mixture. A new item thus reaches a
    list when the user's distribution over the new items is peaked on it, whatever the scale of the text rows
    against the trained ones (serving/mixture.py).

    Few passes over ``[B, N]`` (it runs on every batch): one exponential with the row's common maximum, and both
    groups' sums in one matrix product; a group whose every row is more than ~87 (float32's range) below the
    other's best counts as empty.

    Args:
        scores: ``[B, N]`` scores with bias and seen penalty (-inf: never recommended).
        item_new: ``[N]``, 1 on new rows, else 0.
        new_mix: ``[3]``: ``share`` in [0, 1) (0: new rows never recommended), ``temperature`` > 0, ``mass`` >= 0.
    """
    is_new = item_new > 0.5  # [N]
    share, temperature, mass = new_mix[0], new_mix[1], new_mix[2]
    scaled = scores * torch.where(is_new, 1.0 / temperature, torch.ones_like(item_new))  # [B, N]
    top = scaled.amax(dim=1, keepdim=True)  # [B, 1]
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    groups = torch.stack([1.0 - item_new, item_new], dim=1)  # [N, 2]
    lse = torch.log(torch.exp(scaled - top) @ groups) + top  # [B, 2]: log sum exp of the trained, the new rows
    lse_trained, lse_new = lse[:, :1], lse[:, 1:]
    none = (lse_trained + torch.log(mass)) / temperature  # a pseudo-row scored like the trained total * mass
    high = torch.maximum(lse_new, none)
    high = torch.where(torch.isfinite(high), high, torch.zeros_like(high))
    lse_new = torch.log(torch.exp(lse_new - high) + torch.exp(none - high)) + high
    # a user with no trained row left (all excluded) ranks the new rows by their own scores
    both = torch.isfinite(lse_trained) & torch.isfinite(lse_new)
    shift = torch.where(both, lse_trained - lse_new, torch.zeros_like(lse_new))
    delta = torch.log(share) - torch.log1p(-share) + shift  # [B, 1]; share 0: -inf
    return torch.where(is_new, scaled + delta, scores)


def item_table(model: SASRec) -> np.ndarray:
    """The exported ``item_emb``: float32 ``[n_rows, dim]``, row 0 zero."""
    model.eval()
    with torch.no_grad():
        table = model.item_table().detach().float().cpu().numpy().copy()
    table[PAD_ID] = 0.0
    return table


def default_bias(n_rows: int) -> np.ndarray:
    """``item_bias`` that never recommends pad and unknown: float32 ``[n_rows]``."""
    bias = np.zeros(n_rows, dtype=np.float32)
    bias[[PAD_ID, UNK_ID]] = -np.inf
    return bias


def export_onnx(model: SASRec, path: str | Path, top_k: int, dynamo: bool = True, blend: Blend | None = None) -> None:
    """Writes the scoring graph to ``path`` (opset 18, dynamic axes ``batch``, ``length`` (<= max_len), ``n_rows``).

    Args:
        model: trained SASRec (moved to CPU for export).
        path: output file.
        top_k: items per user in the outputs (at most ``n_items``).
        dynamo: use the torch.export-based exporter (default: a compact graph with static
            ``top_k`` output shapes); False uses the legacy TorchScript exporter (faster export,
            larger graph).
        blend: co-occurrence blended into the scores (:mod:`encoders.blend`).
    """
    model = model.to("cpu").eval()
    cfg = model.config
    graph = ScoringGraph(model, top_k, blend, conditional=dynamo).eval()
    n_rows = cfg.n_rows
    seq = torch.randint(FIRST_ITEM_ID, n_rows, (2, cfg.max_len), dtype=torch.int64)
    seq[0, : cfg.max_len // 2] = PAD_ID
    args: tuple[torch.Tensor, ...] = (
        seq,
        torch.from_numpy(item_table(model)),
        torch.from_numpy(default_bias(n_rows)),
        torch.tensor([float("-inf")]),
        torch.zeros(n_rows, dtype=torch.float32),
        torch.tensor([0.1, 1.0, 0.01]),
    )
    names = list(INPUTS) + list(NEW_ROW_INPUTS)
    if cfg.n_types:
        types = torch.randint(OTHER, cfg.n_types, seq.shape, dtype=torch.int64) * (seq != PAD_ID)
        scenarios = torch.randint(OTHER, cfg.n_scenarios, seq.shape, dtype=torch.int64) * (seq != PAD_ID)
        args = (*args, types, scenarios)
        names += list(BEHAVIOUR_INPUTS)
    kwargs: dict[str, Any] = {
        "input_names": names,
        "output_names": list(OUTPUTS),
        "opset_version": OPSET,
        "dynamo": dynamo,
    }
    if dynamo:
        batch, rows = torch.export.Dim("batch"), torch.export.Dim("n_rows")
        length = torch.export.Dim("length", min=1, max=cfg.max_len)
        kwargs["dynamic_shapes"] = {
            "item_seq": {0: batch, 1: length},
            "item_emb": {0: rows},
            "item_bias": {0: rows},
            "seen_penalty": None,
            "item_new": {0: rows},
            "new_mix": None,
            **{name: {0: batch, 1: length} for name in names[len(INPUTS) + len(NEW_ROW_INPUTS) :]},
        }
        kwargs["external_data"] = False
        kwargs["verbose"] = False
    else:
        kwargs["dynamic_axes"] = {
            "item_seq": {0: "batch", 1: "length"},
            "item_emb": {0: "n_rows"},
            "item_bias": {0: "n_rows"},
            "item_new": {0: "n_rows"},
            **{name: {0: "batch", 1: "length"} for name in names[len(INPUTS) + len(NEW_ROW_INPUTS) :]},
            "top_scores": {0: "batch"},
            "top_ids": {0: "batch"},
        }
    with quiet_onnx_export():
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
        torch.onnx.export(graph, args, str(path), **kwargs)
    list_length_input(path, top_k)


def list_length_input(path: str | Path, top_k: int) -> None:
    """Makes the list length a call asks for an input of the graph: ``top_k``, int64 ``[1]``.

    The exporter writes ``top_k`` as a constant of every ``TopK``; the input replaces it, capped at the export's
    ``top_k``, and is also an initializer holding that value, so a call that does not feed it gets ``top_k`` items
    as before. The worker feeds ``STREAMREC_TOP_K``: on a 3,400-item catalog onnxruntime's ``TopK`` for k = 100
    costs about seven times k = 10, and the blended graph runs two of them per batch.
    """
    model = onnx.load(str(path))
    graph = model.graph
    if any(LIST_LENGTH_INPUT in (*node.input, *node.output) for node in graph.node):
        raise RuntimeError(f"{path}: the graph already has a tensor named {LIST_LENGTH_INPUT}")
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    top_ks = [node for node in graph.node if node.op_type == "TopK"]
    for node in top_ks:
        value = constants.get(node.input[1])
        if value is None or value.reshape(-1).tolist() != [top_k]:
            raise RuntimeError(f"{path}: {node.name}'s k is not the constant {top_k}; cannot make it an input")
    capped = "top_k_capped"
    cap = helper.make_node("Min", [LIST_LENGTH_INPUT, "top_k_export"], [capped], name="top_k_cap")
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([top_k], dtype=np.int64), LIST_LENGTH_INPUT),
            numpy_helper.from_array(np.array([top_k], dtype=np.int64), "top_k_export"),
        ]
    )
    graph.input.append(helper.make_tensor_value_info(LIST_LENGTH_INPUT, TensorProto.INT64, [1]))
    old = {node.input[1] for node in top_ks}
    for node in top_ks:
        node.input[1] = capped
    still_used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name not in old or init.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    first = min(list(graph.node).index(node) for node in top_ks)
    graph.node.insert(first, cap)
    for output in graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = "k"
    del graph.value_info[:]  # shapes with the constant k in them; onnxruntime infers its own
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@contextlib.contextmanager
def quiet_onnx_export() -> Iterator[None]:
    """Around ``torch.onnx.export``: no gradients, no deprecation warnings, and the exporter's loggers (e.g.
    "torchvision is not installed", per-initializer INFO lines) at ERROR; add more warning filters inside."""
    names = ("torch.onnx._internal.exporter._registration", "onnx_ir", "onnxscript")
    noisy = [logging.getLogger(n) for n in names]
    levels = [log.level for log in noisy]
    for log in noisy:
        log.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            yield
    finally:
        for log, level in zip(noisy, levels, strict=True):
            log.setLevel(level)


def _text_encoder(out_dir: Path, text_model: str | None, text_dim: int) -> dict[str, Any]:
    """Writes ``text_encoder.onnx`` + ``tokenizer.json`` when the text model folder is here; their manifest keys.

    Without the folder (a checkpoint re-exported on another machine) the version ships no encoder: the worker
    then cannot compute rows of new items from their text (serving.text_rows), which is logged.
    """
    from encoders.text import export_text_encoder

    if not text_model or not Path(text_model).is_dir():
        logger.warning(
            "text model folder %r not found: this version ships no text encoder, so workers cannot embed new "
            "items' text; export where that folder exists",
            text_model,
        )
        return {}
    return export_text_encoder(out_dir, text_model, opset=OPSET, expected_dim=text_dim)


def write_artifact(
    model: SASRec,
    vocab: Vocabulary,
    model_root: str | Path,
    *,
    top_k: int,
    training: dict[str, Any],
    metrics: dict[str, Any],
    extra_config: dict[str, Any] | None = None,
    text_model: str | None = None,
    behaviours: Behaviours | None = None,
    new_item_mixture: dict[str, Any] | None = None,
    blend: Blend | None = None,
) -> Path:
    """Writes a complete model version into ``model_root`` (``.tmp-*`` then rename).

    Args:
        model: the trained model.
        vocab: its item vocabulary (``items.tsv``).
        model_root: the folder holding one sub-folder per version.
        top_k: items returned by the graph (capped at ``n_items``).
        training: the manifest's ``training`` summary.
        metrics: the manifest's ``metrics``.
        extra_config: more hyper-parameters for the manifest's ``config`` (training ones).
        text_model: the text model's folder when the model uses text embeddings: its encoder and tokenizer
            are exported too (``text_encoder.onnx``, ``tokenizer.json``) for the worker's rows of new items.
        behaviours: the event types and scenarios of a model that reads behaviour (the manifest's ``behaviour``).
        new_item_mixture: how this version's new items compete, chosen on validation
            (:func:`encoders.mixture_fit.fit_new_item_temperature`; the manifest's ``text.mixture``).
        blend: co-occurrence blended into the scores, weight chosen on validation (the manifest's ``blend``).

    Returns:
        The published version folder.
    """
    cfg = model.config
    if vocab.n_rows != cfg.n_rows:
        raise ValueError(f"vocabulary has {vocab.n_rows} rows, the model {cfg.n_rows}")
    sizes = (behaviours.n_types, behaviours.n_scenarios) if behaviours else (0, 0)
    if sizes != (cfg.n_types, cfg.n_scenarios):
        raise ValueError(f"behaviour vocabularies have {sizes} rows, the model {(cfg.n_types, cfg.n_scenarios)}")
    top_k = min(top_k, vocab.n_items)
    tmp = new_tmp_dir(model_root)
    try:
        export_onnx(model, tmp / MODEL_FILE, top_k, blend=blend)
        np.save(tmp / ITEM_EMB_FILE, item_table(model))
        vocab.write_tsv(tmp / ITEMS_FILE)
        text = None
        if cfg.text_dim:
            np.save(tmp / TEXT_EMB_FILE, model.text_emb.detach().cpu().numpy().astype(np.float32))
            np.savez(
                tmp / TEXT_PROJ_FILE,
                weight=model.text_proj.weight.detach().cpu().numpy().T.astype(np.float32),
                bias=model.text_proj.bias.detach().cpu().numpy().astype(np.float32),
            )
            text = {
                "model": text_model or "",
                "dim": cfg.text_dim,
                "emb_file": TEXT_EMB_FILE,
                "proj_file": TEXT_PROJ_FILE,
                **_text_encoder(tmp, text_model, cfg.text_dim),
            }
            if new_item_mixture is not None:
                text["mixture"] = new_item_mixture
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = {
        "model_type": "sasrec",
        "opset": OPSET,
        "inputs": list(INPUTS) + list(NEW_ROW_INPUTS) + (list(BEHAVIOUR_INPUTS) if behaviours else []),
        "outputs": list(OUTPUTS),
        "max_len": cfg.max_len,
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "n_items": vocab.n_items,
        "dim": cfg.dim,
        "top_k": top_k,
        "text": text,
        "behaviour": behaviours.to_manifest() if behaviours else None,
        "blend": blend.to_manifest() if blend else None,
        "config": {**cfg.to_dict(), **(extra_config or {})},
        "training": training,
        "metrics": metrics,
    }
    return publish(tmp, manifest)

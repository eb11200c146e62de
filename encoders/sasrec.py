"""SASRec: a causal Transformer over a user's left-padded item sequence, tied item embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn

from encoders.block import SASRecBlock
from encoders.config import FIRST_ITEM_ID, PAD_ID, ModelConfig
from encoders.dropout import ByteDropout


class SASRec(nn.Module):
    """Self-attentive sequential recommender (Kang & McAuley 2018), pre-norm variant.

    The item table is both the input embedding and the output scorer (tied). With text
    (``config.text_dim > 0``) a row is ``id_emb + text_proj(text_emb)``; rows whose
    ``id_mask`` is 0 (items never seen in training) use ``text_proj(text_emb)`` alone, which is
    exactly how serving builds the row of a brand-new item.

    The encoder takes the item table as an argument so the exported graph can receive it as a
    runtime input (live catalog).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.n_rows < FIRST_ITEM_ID + 1:
            raise ValueError("set ModelConfig.n_rows (n_items + 2) before building the model")
        self.config = config
        d = config.dim
        self.item_emb = nn.Embedding(config.n_rows, d, padding_idx=PAD_ID)
        self.pos_emb = nn.Embedding(config.max_len, d)
        if config.n_types:  # behaviour: what was done (event type) and where (scenario), at every position
            self.type_emb = nn.Embedding(config.n_types, d, padding_idx=PAD_ID)
            self.scenario_emb = nn.Embedding(config.n_scenarios, d, padding_idx=PAD_ID)
        self.emb_dropout = ByteDropout(config.dropout)
        self.blocks = nn.ModuleList(SASRecBlock(d, config.n_heads, config.dropout) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(d)
        self.register_buffer("id_mask", torch.ones(config.n_rows, 1))  # [N, 1]
        if config.text_dim:
            self.text_proj = nn.Linear(config.text_dim, d)
            self.register_buffer("text_emb", torch.zeros(config.n_rows, config.text_dim))
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1 and "emb" not in name:
                nn.init.xavier_uniform_(p)
        nn.init.normal_(self.item_emb.weight, std=self.config.init_std)
        nn.init.normal_(self.pos_emb.weight, std=self.config.init_std)
        behaviour = (self.type_emb, self.scenario_emb) if self.config.n_types else ()
        for emb in behaviour:
            nn.init.normal_(emb.weight, std=self.config.init_std)
        with torch.no_grad():
            self.item_emb.weight[PAD_ID].zero_()
            for emb in behaviour:
                emb.weight[PAD_ID].zero_()

    def item_table(self, id_dropout: float = 0.0) -> torch.Tensor:
        """Returns the item embedding table ``[N, D]`` (row 0 all zeros).

        Args:
            id_dropout: with text, the probability to drop each item's id embedding (training
                only), so that the text projection alone stays a good cold-start row.
        """
        table = self.item_emb.weight  # [N, D]
        if not self.config.text_dim:
            return table
        keep = self.id_mask  # [N, 1]
        if self.training and id_dropout > 0:
            keep = keep * (torch.rand_like(keep) >= id_dropout)  # [N, 1]
        table = table * keep + self.text_proj(self.text_emb)  # [N, D]
        not_pad = torch.ones_like(keep)  # [N, 1]
        not_pad[PAD_ID] = 0.0
        return table * not_pad  # [N, D]

    def encode(
        self,
        item_seq: torch.Tensor,
        table: torch.Tensor,
        last_only: bool = False,
        behaviour: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encodes left-padded sequences.

        Args:
            item_seq: internal ids ``[B, L]``, oldest first, padded left with 0. ``L`` is
                ``max_len``, or less in training when every row of the batch is shorter: the
                newest item always sits at the last position, so cropping leading padding
                changes nothing.
            table: item embedding table ``[N, D]``.
            last_only: return only the newest position, ``[B, 1, D]``; the last block then
                computes that position alone (what serving needs, for less work).
            behaviour: ``[B, L, 2]`` event-type and scenario ids of each position (``serving.behaviour``), padded
                like ``item_seq``; their embeddings are added to the item's. Used only by a model built with
                ``n_types``; None there means "other" at every position.

        Returns:
            Hidden states ``[B, L, D]`` (or ``[B, 1, D]``); position ``t`` summarises items
            ``<= t``; padded positions are zero.
        """
        length = item_seq.shape[1]
        nonpad = item_seq != PAD_ID  # [B, L]
        x = table[item_seq] * math.sqrt(self.config.dim)  # [B, L, D]
        x = x + self.pos_emb.weight[self.config.max_len - length :]  # [B, L, D]
        if self.config.n_types:
            if behaviour is None:
                behaviour = torch.stack([nonpad.long(), nonpad.long()], dim=-1)  # [B, L, 2] "other" (1)
            x = x + self.type_emb(behaviour[..., 0]) + self.scenario_emb(behaviour[..., 1])  # [B, L, D]
        x = self.emb_dropout(x) * nonpad.unsqueeze(-1)  # [B, L, D]
        idx = torch.arange(length, device=item_seq.device)
        causal = idx.unsqueeze(1) >= idx.unsqueeze(0)  # [L, L] query i sees key j <= i
        diag = idx.unsqueeze(1) == idx.unsqueeze(0)  # [L, L]
        allowed = causal & (nonpad.unsqueeze(1) | diag)  # [B, L, L]
        allowed = allowed.unsqueeze(1)  # [B, 1, L, L]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            only = last_only and i == last
            keep = nonpad[:, -1:] if only else nonpad  # [B, 1] or [B, L]
            x = block(x, allowed, last_only=only) * keep.unsqueeze(-1)  # [B, L or 1, D]
        keep = nonpad[:, -1:] if last_only else nonpad
        return self.final_norm(x) * keep.unsqueeze(-1)  # [B, L or 1, D]

    def score_last(
        self, item_seq: torch.Tensor, table: torch.Tensor | None = None, behaviour: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores every row of the item table as the next item after each sequence.

        Args:
            item_seq: ``[B, L]`` left-padded internal ids.
            table: item table ``[N, D]``; defaults to :meth:`item_table`.
            behaviour: ``[B, L, 2]`` behaviour ids (see :meth:`encode`).

        Returns:
            Scores ``[B, N]`` (no masking applied).
        """
        if table is None:
            table = self.item_table()
        h = self.encode(item_seq, table, last_only=True, behaviour=behaviour)[:, -1, :]  # [B, D] newest position
        return h @ table.T  # [B, N]

"""One SASRec Transformer block: pre-norm causal self-attention + point-wise feed-forward."""

from __future__ import annotations

import math

import torch
from torch import nn

from encoders.dropout import ByteDropout


class SASRecBlock(nn.Module):
    """Pre-LayerNorm Transformer block with an explicit attention mask.

    Args:
        dim: hidden size.
        n_heads: attention heads (must divide ``dim``).
        dropout: dropout on attention weights and on both residual branches.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.attn_dropout = ByteDropout(dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), ByteDropout(dropout), nn.Linear(dim, dim))
        self.dropout = ByteDropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Applies the block.

        Args:
            x: hidden states ``[B, L, D]``.
            allowed: ``[B, 1, L, L]`` bool, True where query ``i`` may attend to key ``j``
                (causal, non-padding keys, and always itself so no row is empty).
            last_only: compute only the newest position's output (keys and values still come
                from every position): exactly that row of the full result, at a fraction of the cost.

        Returns:
            New hidden states ``[B, L, D]``, or ``[B, 1, D]`` with ``last_only``.
        """
        b, length, d = x.shape
        # per-position layers on [B * L, D]: onnxruntime then fuses each product with its bias (Gemm), which it
        # does not for 3-d inputs
        h = self.attn_norm(x.reshape(b * length, d))  # [B * L, D]
        if last_only:
            # the newest position's query alone (keys and values still from every position)
            w, bias = self.qkv.weight, self.qkv.bias
            q = nn.functional.linear(h.view(b, length, d)[:, -1], w[:d], bias[:d]).view(b, 1, d)  # [B, 1, D]
            k, v = nn.functional.linear(h, w[d:], bias[d:]).view(b, length, 2 * d).chunk(2, dim=-1)  # 2 x [B, L, D]
            x, allowed = x[:, -1:], allowed[..., -1:, :]  # [B, 1, D], [B, 1, 1, L]
        else:
            q, k, v = self.qkv(h).view(b, length, 3 * d).chunk(3, dim=-1)  # 3 x [B, L, D]
        lq = q.shape[1]
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # [B, H, Lq, Dh], 2 x [B, H, L, Dh]
        att = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # [B, H, Lq, L]
        att = att.masked_fill(~allowed, float("-inf")).softmax(dim=-1)  # [B, H, Lq, L]
        ctx = self.attn_dropout(att) @ v  # [B, H, Lq, Dh]
        ctx = ctx.squeeze(1) if self.n_heads == 1 else ctx.transpose(1, 2)  # [B, Lq, (H,) Dh]
        x = x.reshape(b * lq, d) + self.dropout(self.out(ctx.reshape(b * lq, d)))  # [B * Lq, D]
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))  # [B * Lq, D]
        return x.view(b, lq, d)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` -> ``[B, H, L, Dh]``. One head is a reshape, not a transpose: the exported graph then
        multiplies the keys transposed in place (onnxruntime fuses ``k.transpose(-2, -1)`` into the product)
        instead of copying them with a 4-d transpose for every batch."""
        if self.n_heads == 1:
            return t.unsqueeze(1)
        return t.view(t.shape[0], t.shape[1], self.n_heads, self.head_dim).transpose(1, 2)

"""Full-softmax cross-entropy over the item table, computed in row chunks (memory-light)."""

from __future__ import annotations

import torch


class _ChunkedSoftmaxCE(torch.autograd.Function):
    """Mean of ``logsumexp(h @ W.T) - (h @ W.T)[target]`` without keeping the ``[M, N]`` logits.

    The logits of each chunk of rows are recomputed in the backward pass, so memory and memory
    traffic stay at ``chunk x N`` instead of ``M x N`` (several times faster on CPU for a
    catalog of a few thousand items).
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, table: torch.Tensor, target: torch.Tensor,
                chunk: int) -> torch.Tensor:
        lse = torch.empty(h.shape[0], dtype=h.dtype, device=h.device)  # [M]
        picked = (h * table[target]).sum(-1)  # [M] target logits
        for s in range(0, h.shape[0], chunk):
            lse[s:s + chunk] = torch.logsumexp(h[s:s + chunk] @ table.T, dim=-1)  # [C]
        ctx.save_for_backward(h, table, target, lse)
        ctx.chunk = chunk
        return (lse - picked).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, table, target, lse = ctx.saved_tensors
        scale = grad / h.shape[0]
        grad_h = torch.empty_like(h)  # [M, D]
        grad_table = torch.zeros_like(table)  # [N, D]
        for s in range(0, h.shape[0], ctx.chunk):
            hc = h[s:s + ctx.chunk]  # [C, D]
            p = torch.exp_(hc @ table.T - lse[s:s + ctx.chunk, None])  # [C, N] softmax
            rows = torch.arange(hc.shape[0], device=h.device)
            p[rows, target[s:s + ctx.chunk]] -= 1.0
            p.mul_(scale)
            grad_h[s:s + ctx.chunk] = p @ table  # [C, D]
            grad_table.addmm_(p.T, hc)  # [N, D]
        return grad_h, grad_table, None, None


def full_softmax_ce(
    h: torch.Tensor, table: torch.Tensor, target: torch.Tensor, chunk: int = 2048
) -> torch.Tensor:
    """Mean cross-entropy of ``target`` under ``softmax(h @ table.T)``.

    Args:
        h: ``[M, D]`` hidden states.
        table: ``[N, D]`` candidate embeddings (the catalog rows).
        target: ``[M]`` int64 row indices into ``table``.
        chunk: rows per chunk.
    """
    return _ChunkedSoftmaxCE.apply(h, table, target, chunk)

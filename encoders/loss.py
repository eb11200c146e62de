"""Full-softmax cross-entropy over the item table, computed in row chunks (memory-light)."""

from __future__ import annotations

import torch


class _ChunkedSoftmaxCE(torch.autograd.Function):
    """Mean of ``logsumexp(h @ W.T) - (h @ W.T)[target]`` without keeping the ``[M, N]`` logits.

    The loss is a scalar, so its gradients are computed in the same pass over each chunk of
    ``chunk x N`` logits as the loss itself (softmax minus one-hot), and the backward pass only
    scales them: one pass over the logits instead of two, and memory stays at ``chunk x N``.
    """

    @staticmethod
    def forward(
        ctx, h: torch.Tensor, table: torch.Tensor, target: torch.Tensor, chunk: int, dtype: torch.dtype
    ) -> torch.Tensor:
        m = h.shape[0]
        hm, tm = h.to(dtype), table.to(dtype)  # matmul operands
        tm_t = tm.T.contiguous()  # [D, N]
        grad_h = torch.empty(h.shape, dtype=torch.float32, device=h.device)  # [M, D]
        grad_table = torch.zeros(table.shape, dtype=torch.float32, device=h.device)  # [N, D]
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        for s in range(0, m, chunk):
            hc, tc = hm[s : s + chunk], target[s : s + chunk]  # [C, D], [C]
            rows = torch.arange(hc.shape[0], device=h.device)
            p = (hc @ tm_t).float()  # [C, N] logits
            top = p.amax(dim=1, keepdim=True)  # [C, 1]
            picked = p[rows, tc]  # [C]
            p.sub_(top).exp_()
            norm = p.sum(dim=1, keepdim=True)  # [C, 1]
            total += (norm.log().squeeze(1) + top.squeeze(1) - picked).sum(dtype=torch.float64)
            p.div_(norm)  # softmax
            p[rows, tc] -= 1.0  # d(loss)/d(logits), before the 1/M of the mean
            p = p.to(dtype)
            grad_h[s : s + chunk] = p @ tm  # [C, D]
            grad_table += p.T @ hc  # [N, D]
        ctx.save_for_backward(grad_h, grad_table)
        ctx.in_dtypes = (h.dtype, table.dtype)
        return (total / m).to(torch.float32)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_h, grad_table = ctx.saved_tensors
        scale = grad.float() / grad_h.shape[0]
        h_dtype, table_dtype = ctx.in_dtypes
        return (grad_h * scale).to(h_dtype), (grad_table * scale).to(table_dtype), None, None, None


def full_softmax_ce(
    h: torch.Tensor,
    table: torch.Tensor,
    target: torch.Tensor,
    chunk: int = 2048,
    matmul_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Mean cross-entropy of ``target`` under ``softmax(h @ table.T)``.

    Args:
        h: ``[M, D]`` hidden states.
        table: ``[N, D]`` candidate embeddings (the catalog rows).
        target: ``[M]`` int64 row indices into ``table``.
        chunk: rows per chunk.
        matmul_dtype: dtype of the three matmuls (``torch.bfloat16`` is several times faster on
            CPUs with AVX512-BF16 or AMX, and on GPUs); softmax, loss and gradients are
            accumulated in float32.
    """
    return _ChunkedSoftmaxCE.apply(h, table, target, chunk, matmul_dtype)

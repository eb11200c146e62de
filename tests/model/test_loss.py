"""The chunked full-softmax cross-entropy equals torch's cross-entropy, value and gradients."""

import pytest
import torch
import torch.nn.functional as F

from encoders.loss import full_softmax_ce


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(37, 16, generator=g, requires_grad=True)
    table = torch.randn(50, 16, generator=g, requires_grad=True)
    target = torch.randint(0, 50, (37,), generator=g)
    return h, table, target


def _reference(h, table, target, weight: float):
    loss = F.cross_entropy(h @ table.T, target) * weight
    gh, gt = torch.autograd.grad(loss, (h, table))
    return loss.detach(), gh, gt


@pytest.mark.parametrize("chunk", [1, 8, 37, 1000])
def test_matches_cross_entropy_in_float32(chunk):
    h, table, target = _case()
    want = _reference(h, table, target, 3.0)
    loss = full_softmax_ce(h, table, target, chunk=chunk) * 3.0
    gh, gt = torch.autograd.grad(loss, (h, table))
    torch.testing.assert_close(loss.detach(), want[0])
    torch.testing.assert_close(gh, want[1])
    torch.testing.assert_close(gt, want[2])


def test_bfloat16_matmuls_stay_close_and_return_float32():
    h, table, target = _case(1)
    want = _reference(h, table, target, 1.0)
    loss = full_softmax_ce(h, table, target, chunk=16, matmul_dtype=torch.bfloat16)
    gh, gt = torch.autograd.grad(loss, (h, table))
    assert loss.dtype == gh.dtype == gt.dtype == torch.float32
    torch.testing.assert_close(loss.detach(), want[0], rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(gh, want[1], rtol=5e-2, atol=5e-3)
    torch.testing.assert_close(gt, want[2], rtol=5e-2, atol=5e-3)


def test_byte_dropout_drops_at_its_rate_and_keeps_the_mean():
    from encoders.dropout import ByteDropout

    torch.manual_seed(0)
    drop = ByteDropout(0.2).train()
    x = torch.ones(200_000)
    y = drop(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 51 / 256) < 0.005
    assert abs(float(y.mean()) - 1.0) < 0.01
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError):
        ByteDropout(1.0)

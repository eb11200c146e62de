"""The serving path encodes only the newest position; it must equal the full encoder's last row."""

import torch

from encoders.config import ModelConfig
from encoders.sasrec import SASRec


def test_last_only_equals_the_last_row_of_the_full_encoding():
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_rows=60, max_len=12, dim=16, n_layers=3, n_heads=2, dropout=0.3)).eval()
    seq = torch.randint(2, 60, (5, 12))
    seq[1, :7] = 0  # left padding
    seq[2, :11] = 0  # a single item
    seq[3, :] = 0  # empty history
    table = model.item_table()
    with torch.no_grad():
        full = model.encode(seq, table)[:, -1, :]
        last = model.encode(seq, table, last_only=True)
    assert last.shape == (5, 1, 16)
    assert torch.allclose(full, last[:, 0, :], atol=1e-6)
    assert last[:, 0, :].abs().sum(dim=1)[[0, 1, 2, 4]].gt(0).all()

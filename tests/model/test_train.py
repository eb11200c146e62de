"""Training: beats popularity on synthetic data, is deterministic, both losses learn."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from encoders.config import ModelConfig, TrainConfig
from encoders.pipeline import DataSource, evaluate_version, prepare
from encoders.train import (
    _training_arrays,
    build_model,
    seed_everything,
    sequence_loss,
)
from tests.model.tiny import train_tiny


def test_sasrec_beats_popularity(trained):
    m = trained.metrics
    assert m["sasrec"]["ndcg@10"] > 1.5 * m["popularity"]["ndcg@10"]
    assert m["sasrec"]["recall@10"] > m["popularity"]["recall@10"]
    assert trained.result.best_valid["ndcg@10"] > 0.1
    assert trained.result.history[-1]["loss"] < trained.result.history[0]["loss"]


def test_exported_model_scores_like_torch_on_the_test_split(trained, sim_dir):
    """``evaluate`` (onnxruntime) reproduces the torch test metrics of the same model."""
    source = DataSource(events=sim_dir / "events.jsonl", items=sim_dir / "items.jsonl")
    ort_metrics = evaluate_version(trained.version_dir, source)
    torch_metrics = trained.metrics["sasrec"]
    assert abs(ort_metrics["sasrec"]["ndcg@10"] - torch_metrics["ndcg@10"]) < 1e-6
    assert abs(ort_metrics["sasrec"]["recall@10"] - torch_metrics["recall@10"]) < 1e-6
    assert ort_metrics["popularity"] == trained.metrics["popularity"]


def _tiny_run(sim_dir, loss: str, seed: int = 0):
    tcfg = TrainConfig(epochs=2, batch_size=64, loss=loss, n_negatives=32, seed=seed, device="cpu")
    return train_tiny(sim_dir, tcfg, seed=seed, dropout=0.1)


def test_training_is_deterministic_given_the_seed(sim_dir):
    a, b = _tiny_run(sim_dir, "ce"), _tiny_run(sim_dir, "ce")
    c = _tiny_run(sim_dir, "ce", seed=1)
    wa, wb, wc = (r.model.item_emb.weight.detach() for r in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_sampled_softmax_learns(sim_dir):
    r = _tiny_run(sim_dir, "sampled")
    losses = [h["loss"] for h in r.history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_loss_is_next_item_cross_entropy_over_unpadded_positions(sim_dir):
    data = DataSource(events=sim_dir / "events.jsonl").load()
    vocab, split = prepare(data, use_text=False)
    cfg = ModelConfig(n_rows=vocab.n_rows, max_len=8, dim=16, n_layers=1, dropout=0.0)
    seed_everything(0)
    model = build_model(cfg, split.train, None).eval()
    tcfg = TrainConfig()
    inputs = torch.tensor([[0, 0, 0, 2, 3, 4, 5, 6]])
    last_only = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 7]])
    expected = F.cross_entropy(model.score_last(inputs)[:, 2:], torch.tensor([7 - 2]))
    torch.testing.assert_close(sequence_loss(model, inputs, last_only, tcfg), expected)
    every = torch.tensor([[0, 0, 0, 3, 4, 5, 6, 7]])
    assert not torch.isclose(sequence_loss(model, inputs, every, tcfg), expected)


def test_encoder_is_causal_and_zeroes_padding(sim_dir):
    cfg = ModelConfig(n_rows=20, max_len=8, dim=16, n_layers=2, dropout=0.0)
    seed_everything(0)
    model = build_model(cfg, (np.arange(2, 20),), None).eval()
    table = model.item_table()
    with torch.no_grad():
        a = model.encode(torch.tensor([[0, 0, 0, 0, 2, 3, 4, 5]]), table)
        b = model.encode(torch.tensor([[0, 0, 0, 0, 2, 3, 4, 9]]), table)
    torch.testing.assert_close(a[0, :-1], b[0, :-1])  # the future does not leak backwards
    assert not torch.allclose(a[0, -1], b[0, -1])
    assert not a[0, :4].any()  # padded positions are zero


def test_time_budget_stops_after_one_validated_epoch(sim_dir):
    tcfg = TrainConfig(epochs=50, eval_every=10, max_minutes=1e-9, device="cpu")
    result = train_tiny(sim_dir, tcfg)
    assert result.epochs_run == 1 and result.best_epoch == 1
    assert "val_ndcg@10" in result.history[0]


def test_windows_make_every_training_event_a_target_once():
    seqs = (np.arange(2, 14), np.array([5, 6]), np.array([7]))  # 11, 1 and 0 targets
    inputs, targets, _ = _training_arrays(seqs, max_len=4, windows=True)
    assert inputs.shape == targets.shape == (4, 4)
    got = sorted(targets[targets != 0].tolist())
    assert got == sorted([*range(3, 14), 6])  # each event after a user's first, exactly once
    # every target is the event that follows its input in the user's history
    pairs = {(int(i), int(t)) for i, t in zip(inputs.ravel(), targets.ravel()) if t}
    assert pairs == {(x, x + 1) for x in range(2, 13)} | {(5, 6)}
    newest, _, _ = _training_arrays(seqs, max_len=4, windows=False)
    assert newest.tolist() == [[9, 10, 11, 12], [0, 0, 0, 5]]  # one sample per user


def test_plateau_cuts_the_learning_rate_before_it_stops(sim_dir):
    # a rate far below float32 resolution leaves the weights, so every validation ties: plateau
    tcfg = TrainConfig(epochs=20, lr=1e-12, patience=1, lr_drops=2, lr_drop_factor=0.5, device="cpu")
    result = train_tiny(sim_dir, tcfg)
    assert [h["lr"] for h in result.history] == [1e-12, 1e-12, 5e-13, 2.5e-13]
    assert result.epochs_run == 4 and result.best_epoch == 1
    plain = train_tiny(sim_dir, TrainConfig(epochs=20, lr=1e-12, patience=1, device="cpu"))
    assert plain.epochs_run == 2

"""The co-occurrence blend: followers, the graph's term, the validation choice, export and checkpoint."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from encoders.baselines import CoOccurrence
from encoders.blend import Blend, BlendTerm, Followers, blended_scorer, choose_weight
from encoders.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from encoders.config import ModelConfig, TrainConfig
from encoders.export import ScoringGraph, default_bias, export_onnx, item_table
from encoders.sasrec import SASRec
from encoders.split import EvalSet, left_pad
from encoders.vocab import Vocabulary


def _chains(n_users: int, n_rows: int, length: int, seed: int) -> list[np.ndarray]:
    """Sequences on a fixed random "next item" map: co-occurrence knows the next item after one look."""
    rng = np.random.default_rng(seed)
    following = rng.permutation(np.arange(2, n_rows))
    nxt = np.zeros(n_rows, dtype=np.int64)
    nxt[np.arange(2, n_rows)] = following
    out = []
    for _ in range(n_users):
        seq = [int(rng.integers(2, n_rows))]
        while len(seq) < length:
            seq.append(int(nxt[seq[-1]]))
        out.append(np.asarray(seq, dtype=np.int64))
    return out


def _numpy_term(followers: Followers, histories: list[np.ndarray], n_cols: int) -> np.ndarray:
    """``log(1 + c)`` ``[B, n_cols]`` from the followers' arrays, item by item: the reference for the graph's term."""
    out = np.zeros((len(histories), n_cols), dtype=np.float32)
    for b, hist in enumerate(histories):
        for j, item in enumerate(np.asarray(hist)[::-1][: followers.n_last]):
            if 2 <= item < followers.n_rows:
                np.add.at(out[b], followers.index[item], followers.weight[item] / (j + 1))
    return np.log1p(out)


def _graph_term(followers: Followers, weight: float, histories: list[np.ndarray], n_cols: int) -> np.ndarray:
    seq = left_pad(histories, 12)
    with torch.no_grad():
        return BlendTerm(followers, weight, max_len=12)(torch.from_numpy(seq), torch.zeros(len(seq), n_cols)).numpy()


def test_followers_equal_cooccurrence_when_nothing_is_cut():
    seqs = _chains(40, 30, 8, seed=0) + [np.array([2, 3, 4, 2, 5])]
    n_rows = 30
    followers = Followers.fit(seqs, n_rows, k=n_rows)
    co = CoOccurrence(seqs, n_rows)
    histories = [s[:-1] for s in seqs[:10]] + [np.array([1, 29]), np.array([], dtype=np.int64)]
    expected = np.log1p(co.score(histories) - co.tiebreak)
    np.testing.assert_allclose(_graph_term(followers, 1.0, histories, n_rows), expected, rtol=1e-5, atol=1e-6)


def test_followers_keep_the_strongest_k():
    seqs = [np.array([2, 3])] * 5 + [np.array([2, 4])] * 3 + [np.array([2, 5])]
    followers = Followers.fit(seqs, 6, k=2)
    kept = dict(zip(followers.index[2].tolist(), followers.weight[2].tolist(), strict=True))
    assert kept == {3: 5.0, 4: 3.0}
    assert not followers.weight[[0, 1, 3, 4, 5]].any()  # rows nobody is followed from


def test_graph_term_equals_numpy_and_ignores_rows_added_while_serving():
    seqs = _chains(50, 40, 10, seed=1)
    followers = Followers.fit(seqs, 40, k=4)
    histories = [s[:-1] for s in seqs[:8]] + [np.array([3, 44, 45])]  # rows 44, 45: added while serving
    got = _graph_term(followers, 1.5, histories, 46)
    np.testing.assert_allclose(got, 1.5 * _numpy_term(followers, histories, 46), rtol=1e-5, atol=1e-6)
    assert not got[:, 40:].any()  # new rows are nobody's follower
    counts = np.zeros(46)
    np.add.at(counts, followers.index[3], followers.weight[3] / 3)  # item 3 is the third newest: weight 1/3
    np.testing.assert_allclose(got[-1], 1.5 * np.log1p(counts), rtol=1e-5)


def test_the_graphs_sparse_sum_equals_scores_plus_the_term():
    seqs = _chains(50, 40, 10, seed=3)
    followers = Followers.fit(seqs, 40, k=4)
    histories = [s[:-1] for s in seqs[:8]] + [np.array([3, 44, 45]), np.array([], dtype=np.int64)]
    term = BlendTerm(followers, 1.5, max_len=12)
    seq = torch.from_numpy(left_pad(histories, 12))
    scores = torch.randn(len(histories), 46)
    scores[:, [0, 1, 44]] = float("-inf")  # pad, unknown and an excluded row stay -inf
    with torch.no_grad():
        dense = scores + term(seq, scores)
        sparse = term.blended(seq, scores)
    assert torch.equal(sparse, dense)  # the same values, bit for bit
    assert (sparse != scores).any()


def test_weight_is_chosen_on_validation():
    n_rows = 60
    seqs = _chains(300, n_rows, 6, seed=2)
    followers = Followers.fit([s[:-1] for s in seqs], n_rows)
    valid = EvalSet(tuple(s[:-1] for s in seqs), np.array([s[-1] for s in seqs]))
    rng = np.random.default_rng(0)

    def noise(histories, behaviour=None):
        return rng.normal(size=(len(histories), n_rows)).astype(np.float32)

    def oracle(histories, behaviour=None):
        out = np.zeros((len(histories), n_rows), np.float32)
        out[np.arange(len(histories)), valid.targets[: len(histories)]] = 50.0
        return out

    chosen = choose_weight(noise, followers, valid)
    assert chosen["weight"] > 0
    assert chosen["valid_ndcg10"][f"{chosen['weight']:g}"] > chosen["valid_ndcg10"]["0"] + 0.5
    assert choose_weight(oracle, followers, valid, batch_size=len(valid))["weight"] == 0.0


def test_export_and_checkpoint_keep_the_blend(tmp_path):
    n_rows, max_len = 40, 8
    seqs = _chains(60, n_rows, 9, seed=3)
    blend = Blend(Followers.fit(seqs, n_rows, k=6), 2.0)
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_rows=n_rows, max_len=max_len, dim=16, n_layers=1)).eval()
    export_onnx(model, tmp_path / "model.onnx", top_k=10, dynamo=True, blend=blend)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    histories = [s[:-1] for s in seqs[:6]]
    seq = left_pad(histories, max_len)
    feeds = {
        "item_seq": seq,
        "item_emb": item_table(model),
        "item_bias": default_bias(n_rows),
        "seen_penalty": np.array([0.0], np.float32),
        "item_new": np.zeros(n_rows, np.float32),
        "new_mix": np.array([0.1, 1.0, 0.01], np.float32),
    }
    scores, ids = session.run(None, feeds)
    with torch.no_grad():
        plain = model.score_last(torch.from_numpy(seq)).numpy()
    plain[:, :2] = -np.inf
    blended = blended_scorer(lambda h, b=None: plain, blend.module(max_len))(histories)
    # the blend orders the list; the scores are the model's own best, in that order
    np.testing.assert_array_equal(ids, np.argsort(-blended, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(scores, -np.sort(-plain, axis=1)[:, :10], atol=1e-4)
    assert (ids != np.argsort(-plain, axis=1, kind="stable")[:, :10]).any()  # the blend changed the lists
    # with new rows (the last 8, rows from text) the graph takes its mixture branch: as the graph without the branch
    emb = item_table(model).copy()
    emb[-8:] = 3.0 * emb[2:10]  # strong enough to enter the lists
    is_new = np.zeros(n_rows, np.float32)
    is_new[-8:] = 1.0
    mix = np.array([0.5, 1.0, 0.01], np.float32)  # half of the next items are new ones
    new_scores, new_ids = session.run(None, {**feeds, "item_emb": emb, "item_new": is_new, "new_mix": mix})
    always = ScoringGraph(model, 10, blend, conditional=False).eval()
    with torch.no_grad():
        inputs = [torch.from_numpy(feeds[k]) for k in ("item_seq", "item_emb", "item_bias", "seen_penalty")]
        inputs[1] = torch.from_numpy(emb)
        want = always(*inputs, torch.from_numpy(is_new), torch.from_numpy(mix))
    np.testing.assert_array_equal(new_ids, want[1].numpy())
    np.testing.assert_allclose(new_scores, want[0].numpy(), atol=1e-4)
    assert np.isin(new_ids, np.arange(n_rows - 8, n_rows)).any() and (new_ids != ids).any()
    # a caller may drop leading padding, even below the blend's n_last newest positions
    short = [s[:n] for s, n in zip(seqs[6:12], (1, 2, 3, 1, 2, 4), strict=True)]
    want_scores, want_ids = session.run(None, {**feeds, "item_seq": left_pad(short, max_len)})
    for width in (1, 2, 4, 6):
        rows = [row for row, history in enumerate(short) if len(history) <= width]
        scores, ids = session.run(None, {**feeds, "item_seq": left_pad([short[r] for r in rows], width)})
        np.testing.assert_array_equal(ids, want_ids[rows])
        np.testing.assert_allclose(scores, want_scores[rows], atol=1e-5)

    vocab = Vocabulary(tuple(f"i{k}" for k in range(2, n_rows)), ("",) * (n_rows - 2))
    path = save_checkpoint(tmp_path / "c.pt", Checkpoint(model, vocab, TrainConfig(), {}, {}, None, None, blend))
    back = load_checkpoint(path).blend
    assert back is not None and back.weight == 2.0
    np.testing.assert_array_equal(back.followers.index, blend.followers.index)
    np.testing.assert_array_equal(back.followers.weight, blend.followers.weight)

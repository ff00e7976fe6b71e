"""The customer side's row-sparse Adam (issue 18's speed-up) computes what the dense update computed.

Before, every step ran Adam over every customer's embedding (O(customers x dim) a step); now a step touches the
batch's rows and brings a row's missed zero-gradient steps up to date in closed form when it is next read. Both are
deterministic here (fixed seeds, no noise), so they must agree to float rounding -- up to Adam's eps, which the
closed form drops (a relative ~1e-5 on these gradients, far inside the tolerances below).
"""

from __future__ import annotations

import numpy as np
import torch

from fedinsight.models.recommender import BPRConfig, DPConfig, ItemParams, LocalTrainer, _Adam, _RowAdam, fit_bpr
from tests.unit.models.test_recommend_model import planted  # noqa: F401  (the fixture)


def test_row_adam_equals_dense_adam_on_sparse_gradients():
    """Random batches of rows (some rows untouched for long gaps, some never) over 300 steps."""
    rng = np.random.default_rng(0)
    start = torch.from_numpy(rng.standard_normal((200, 6)).astype(np.float32))
    dense, sparse = start.clone(), start.clone()
    batches = [torch.from_numpy(np.sort(rng.choice(180, size=int(rng.integers(1, 20)), replace=False)))
               for _ in range(300)]
    reference, rows_adam = _Adam(tuple(dense.shape), 0.01), _RowAdam(sparse, 0.01, len(batches))
    for rows in batches:
        grad_rows = torch.from_numpy(rng.standard_normal((len(rows), 6)).astype(np.float32))
        full = torch.zeros_like(dense)
        full[rows] = grad_rows
        reference.step(dense, full)
        rows_adam.catch_up(rows)
        rows_adam.step(rows, grad_rows)
    rows_adam.finish()
    assert not torch.equal(dense, start)  # it trained
    assert torch.allclose(sparse[180:], start[180:])  # never-touched rows do not move, as under dense Adam
    assert torch.allclose(sparse, dense, atol=1e-5, rtol=1e-4)


def test_local_trainer_sparse_equals_dense(planted):  # noqa: F811
    """fit_bpr-style training (32-customer batches, item side Adam) and customer-only fits give the same tables."""
    split, catalogue = planted
    cfg = BPRConfig(dim=8, lr=0.05, customer_lr=0.05, batch_customers=16)
    tables = []
    for dense in (True, False):
        trainer = LocalTrainer(split, catalogue.num_items, cfg, seed=3, dense_customers=dense)
        items = ItemParams.init(catalogue.num_items, 8, seed=3)
        for _ in range(4):
            items, _ = trainer.train(items, 1)
        trainer.train(items, 2, train_items=False)
        tables.append((trainer.customer_embeddings, items.embeddings))
    (p_dense, q_dense), (p_sparse, q_sparse) = tables
    # float32 rounding (and the dropped eps) grow through the item side's Adam: ~2e-4 after 4 epochs on tables of ~1
    assert np.allclose(p_sparse, p_dense, atol=1e-3) and np.allclose(q_sparse, q_dense, atol=1e-3)


def test_dp_step_sees_the_same_customer_rows(planted):  # noqa: F811
    """Under DP (no noise, so the run is exact) the clipped item sums use the batch's caught-up rows: equal."""
    split, catalogue = planted
    cfg = BPRConfig(dim=8, dp_lr=2.0, optimizer="sgd")  # item-side Adam at dp_lr 2 amplifies float rounding
    dp = DPConfig(noise_multiplier=0.0, clip=1.0, sample_rate=0.3)
    out = []
    for dense in (True, False):
        trainer = LocalTrainer(split, catalogue.num_items, cfg, seed=4, dense_customers=dense)
        items = ItemParams.init(catalogue.num_items, 8, seed=4)
        for _ in range(3):
            items, stats = trainer.train(items, 1, dp)
        out.append((trainer.customer_embeddings, items.as_matrix(), stats.steps))
    assert out[0][2] == out[1][2] > 1
    # ~1e-4 apart: the dropped eps matters most where a customer's gradient coordinate is near zero
    assert np.allclose(out[0][0], out[1][0], atol=1e-3) and np.allclose(out[0][1], out[1][1], atol=1e-3)


def test_fit_bpr_still_learns(planted):  # noqa: F811
    """Behaviour, not just equality: the sparse update still separates the planted taste groups."""
    split, catalogue = planted
    trainer, items = fit_bpr(split, catalogue.num_items, BPRConfig(dim=8, lr=0.05, customer_lr=0.05), 30, seed=1)
    scores = trainer.scores(items, np.arange(split.num_customers))
    even = np.array([int(str(cid)[1:]) % 2 == 0 for cid in split.customer_ids])  # group 0 buys items 0-19
    index = catalogue.index()
    pool_0 = np.array([index[f"i{j:03d}"] for j in range(20)])
    pool_1 = np.array([index[f"i{j:03d}"] for j in range(20, 40)])
    prefers_0 = scores[:, pool_0].mean(axis=1) > scores[:, pool_1].mean(axis=1)
    assert (prefers_0 == even).mean() > 0.9

"""``clipped_gradient_sum``: the full-batch DP-SGD step before its noise (what a distributed-noise partner sends)."""

from __future__ import annotations

import numpy as np
import torch

from fedinsight.models.propensity import build_model, propensity_loss, tensors
from fedinsight.privacy.dpsgd import clipped_gradient_sum


def _data(n: int = 64, seed: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (rng.random(n) < 0.4).astype(float)
    z = rng.normal(size=n)
    return tensors(x, y, z)


def _flat_grad(model, data) -> torch.Tensor:
    model.zero_grad()
    propensity_loss(model, data).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def test_without_clipping_it_is_n_times_the_mean_gradient():
    data = _data()
    model = build_model(4, "mlp", 0)
    total = clipped_gradient_sum(model, data, propensity_loss, max_grad_norm=1e9)
    assert not any(hasattr(p, "grad_sample") or p.grad is not None for p in model.parameters())  # model untouched
    assert torch.allclose(total, 64 * _flat_grad(model, data), rtol=1e-4, atol=1e-5)


def test_each_row_is_clipped_to_the_norm_before_summing():
    data = _data()
    model = build_model(4, "logreg", 0)
    clip = 1e-3  # far below every row's gradient norm: each row contributes exactly its direction x clip
    total = clipped_gradient_sum(model, data, propensity_loss, max_grad_norm=clip)
    rows = []
    for i in range(64):
        g = _flat_grad(model, [t[i:i + 1] for t in data])
        rows.append(g / g.norm() * clip)
    assert torch.allclose(total, torch.stack(rows).sum(0), rtol=1e-4, atol=1e-8)
    assert float(total.norm()) <= 64 * clip * (1 + 1e-6)

"""Customer-level clipping, noise and accounting of the sparse DP-SGD used by the recommender."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.ledger import compose_epsilon, dpsgd_event
from fedinsight.privacy.sparse_dp import (
    CustomerLevelAccountant,
    add_gaussian_noise,
    clip_per_unit,
    noise_generator,
    noise_multiplier_for,
)


def _contributions(rng: np.random.Generator, customers: int, rows: int, width: int, per_customer: int):
    units = np.repeat(np.arange(customers), per_customer)
    items = rng.integers(0, rows, size=len(units))  # repeats within a customer happen and must be coalesced
    values = rng.standard_normal((len(units), width)) * 3
    return torch.from_numpy(units), torch.from_numpy(items), torch.from_numpy(values)


def _per_customer_norms(units, rows, values, num_rows):
    norms = []
    for u in torch.unique(units):
        mask = units == u
        dense = torch.zeros(num_rows, values.shape[1], dtype=values.dtype).index_add_(0, rows[mask], values[mask])
        norms.append(float(dense.norm()))
    return np.array(norms)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clipping_bounds_each_customers_whole_contribution(seed):
    rng = np.random.default_rng(seed)
    units, rows, values = _contributions(rng, customers=7, rows=12, width=5, per_customer=30)
    clip = 2.0
    result = clip_per_unit(units, rows, values, 12, clip)
    # the clipped sum equals the sum of each customer's dense gradient scaled to norm <= C
    expected = torch.zeros(12, 5, dtype=values.dtype)
    for u in torch.unique(units):
        mask = units == u
        dense = torch.zeros(12, 5, dtype=values.dtype).index_add_(0, rows[mask], values[mask])
        expected += dense * min(1.0, clip / float(dense.norm()))
    assert torch.allclose(result.total, expected, atol=1e-10)
    assert result.units == 7
    assert result.clipped_fraction == pytest.approx(float((_per_customer_norms(units, rows, values, 12) > clip).mean()))


def test_adding_one_customer_with_many_interactions_moves_the_sum_by_at_most_c():
    rng = np.random.default_rng(5)
    units, rows, values = _contributions(rng, customers=5, rows=20, width=4, per_customer=10)
    base = clip_per_unit(units, rows, values, 20, 1.5).total
    heavy_rows = torch.from_numpy(rng.integers(0, 20, size=500))
    heavy_vals = torch.from_numpy(rng.standard_normal((500, 4)) * 50)
    with_heavy = clip_per_unit(torch.cat([units, torch.full((500,), 99)]), torch.cat([rows, heavy_rows]),
                               torch.cat([values, heavy_vals]), 20, 1.5).total
    assert float((with_heavy - base).norm()) <= 1.5 + 1e-9


def test_noise_has_the_calibrated_scale_on_every_coordinate():
    total = torch.zeros(400, 50, dtype=torch.float64)
    noisy = add_gaussian_noise(total, noise_multiplier=1.7, clip=0.5, generator=noise_generator(seed=3))
    assert float(noisy.std()) == pytest.approx(0.85, rel=0.03)
    assert (noisy != 0).all()  # untouched rows get noise too
    assert torch.equal(add_gaussian_noise(total, 0.0, 0.5, noise_generator(1)), total)
    with pytest.raises(ConfigError):
        clip_per_unit(torch.zeros(1), torch.zeros(1), torch.zeros(1, 2), 3, clip=0.0)


def test_calibrated_noise_meets_the_target_epsilon_and_is_the_smallest_that_does():
    sigma = noise_multiplier_for(3.0, 1e-3, sample_rate=0.2, steps=100)
    assert compose_epsilon([dpsgd_event(sigma, 0.2, 100)], 1e-3) <= 3.0
    assert compose_epsilon([dpsgd_event(sigma * 0.97, 0.2, 100)], 1e-3) > 3.0
    with pytest.raises(ConfigError, match="epsilon"):
        noise_multiplier_for(0.0, 1e-3, 0.2, 100)


def test_opacus_accountant_history_survives_rounds_and_agrees_with_the_ledger():
    acc = CustomerLevelAccountant()
    for _ in range(5):  # five rounds of 20 steps, kept as one entry
        acc.step(1.3, 0.1, 20)
    assert acc.history == [(1.3, 0.1, 100)]
    restored = CustomerLevelAccountant([tuple(h) for h in acc.history])  # what a partner's state file stores
    eps_opacus = restored.epsilon(1e-4)
    eps_ledger = compose_epsilon(restored.events(), 1e-4)
    assert eps_opacus > 0
    assert eps_opacus == pytest.approx(eps_ledger, rel=0.1)
    acc.step(2.0, 0.1, 10)
    assert len(acc.history) == 2 and acc.epsilon(1e-4) > eps_opacus


@pytest.mark.parametrize("dense", [True, False])
def test_rank_one_clipping_matches_the_generic_one(dense, monkeypatch):
    import fedinsight.privacy.sparse_dp as sparse_dp

    if not dense:  # the sort-based path for batches too large for a dense scratch matrix
        monkeypatch.setattr(sparse_dp, "DENSE_LIMIT", 0)
    rng = np.random.default_rng(9)
    units = torch.from_numpy(np.repeat(np.array([0, 1, 2, 4, 5, 6]), 40))  # unit 3 has no rows
    rows = torch.from_numpy(rng.integers(0, 30, size=240))
    coef = torch.from_numpy(rng.standard_normal(240))
    vectors = torch.from_numpy(rng.standard_normal((7, 5)))
    generic = clip_per_unit(units, rows, coef[:, None] * vectors[units], 30, 0.7)
    fast = sparse_dp.clip_per_unit_rank_one(units, rows, coef, vectors, 30, 0.7)
    assert torch.allclose(generic.total, fast.total, atol=1e-10)
    assert fast.units == generic.units == 6
    assert fast.clipped_fraction == pytest.approx(generic.clipped_fraction)
    assert fast.mean_norm == pytest.approx(generic.mean_norm)

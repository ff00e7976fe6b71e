"""One shared scaler for every partner, from noisy federated sums (not fitted per partner)."""

from __future__ import annotations

import numpy as np
import pytest

from fedinsight.data import PartitionSpec, load_federation
from fedinsight.models.federated_stats import (
    SPEND_BINS,
    STATS_CLIP,
    PooledStats,
    contributions,
    histogram_cdf,
    histogram_quantile,
    partner_stats,
    spend_histogram,
    stats_length,
    stats_sensitivity,
)
from fedinsight.models.propensity import SharedScaler
from fedinsight.privacy.mechanisms import gaussian
from fedinsight.tasks.propensity.features import CDNOW_WINDOW, customer_table, unit_features, unit_spend


@pytest.fixture(scope="module")
def partners():
    parts = load_federation("cdnow", PartitionSpec(partners=4, scheme="dirichlet", alpha=0.5, seed=1))
    out = []
    for data in parts.values():
        table = customer_table(data.transactions, CDNOW_WINDOW)
        out.append((unit_features(table, CDNOW_WINDOW), table["buys_again"].to_numpy(),
                    unit_spend(table["spend"].to_numpy())))
    return out


def test_federated_sums_give_the_pooled_scaler(partners):
    d = partners[0][0].shape[1]
    vectors = [partner_stats(u, y, t) for u, y, t in partners]
    assert all(len(v) == stats_length(d) for v in vectors)
    pooled_unit = np.vstack([u for u, _, _ in partners])
    exact = SharedScaler.fit(pooled_unit)
    federated = PooledStats.from_vectors(vectors, d).scaler()
    assert federated.mean == pytest.approx(exact.mean, abs=1e-3)  # clipping at 3 almost never binds
    assert federated.std == pytest.approx(exact.std, rel=0.02)


def test_noisy_sums_keep_the_scaler_sane(partners):
    """With DP noise the variance is floored where noise would make it unreliable, never blown up."""
    d = partners[0][0].shape[1]
    m = 11.0
    noisy = [gaussian(partner_stats(u, y, t), stats_sensitivity(d), m).values for u, y, t in partners]
    pooled = PooledStats.from_vectors(noisy, d, m * stats_sensitivity(d))
    scaler = pooled.scaler()
    exact = SharedScaler.fit(np.vstack([u for u, _, _ in partners]))
    ratio = np.asarray(scaler.std) / np.asarray(exact.std)
    assert ratio.min() > 0.5  # a feature is never standardised to many times its real spread
    assert min(scaler.std) >= np.sqrt(pooled.variance_floor()) - 1e-12


def test_each_customer_moves_the_sums_by_at_most_the_sensitivity():
    rng = np.random.default_rng(0)
    unit = rng.random((500, 9))
    unit[0] = 1.0  # the worst case customer
    rows = contributions(unit, np.ones(500), np.ones(500))
    assert np.linalg.norm(rows, axis=1).max() <= STATS_CLIP + 1e-9
    assert stats_sensitivity(9) == STATS_CLIP


def test_spend_histogram_quantiles():
    values = np.concatenate([np.zeros(700), np.linspace(0.01, 1.0, 300)])
    hist = spend_histogram(values)
    assert hist.sum() == 1000 and hist[0] == 700 and len(hist) == SPEND_BINS
    assert histogram_quantile(hist, 0.5) == 0.0  # ties at zero: the median customer spends nothing
    assert histogram_cdf(hist, 0.0) == pytest.approx(0.7)
    q = histogram_quantile(hist, 0.85)
    assert q == pytest.approx(np.quantile(values, 0.85), abs=1 / (SPEND_BINS - 1))
    assert histogram_cdf(hist, q) == pytest.approx(0.85, abs=1e-9)

"""Noise mechanisms: OpenDP samples, the scale matches the budget, intervals cover at the stated rate."""

from __future__ import annotations

import numpy as np
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.ledger import compose_epsilon
from fedinsight.privacy.mechanisms import gaussian, gaussian_noise_multiplier, laplace, release


def test_laplace_scale_event_and_noise():
    r = laplace(np.zeros(4000), sensitivity=2.0, epsilon=0.5)
    assert r.scale == pytest.approx(4.0)
    assert r.event.noise_multiplier == pytest.approx(2.0)
    # empirical std of Laplace(b) is b*sqrt(2)
    assert np.std(r.values) == pytest.approx(4.0 * np.sqrt(2), rel=0.1)
    coverage = np.mean(np.abs(r.values) <= r.ci95_halfwidth)
    assert 0.93 <= coverage <= 0.97


def test_gaussian_calibration_matches_accountant():
    m = gaussian_noise_multiplier(1.0, 1e-5)
    assert 2.0 < m < 6.0  # roughly sqrt(2 ln(1.25/delta)) / eps = 4.8 (classic bound is looser)
    assert compose_epsilon([release([0.0], 1.0, 1.0, mechanism="gaussian", delta=1e-5).event], 1e-5) \
        == pytest.approx(1.0, rel=0.02)
    r = gaussian(np.zeros(4000), sensitivity=3.0, noise_multiplier=m)
    assert np.std(r.values) == pytest.approx(3.0 * m, rel=0.1)
    assert 0.93 <= np.mean(np.abs(r.values) <= r.ci95_halfwidth) <= 0.97


def test_noise_is_fresh_each_call():
    a, b = laplace([0.0, 0.0], 1.0, 1.0), laplace([0.0, 0.0], 1.0, 1.0)
    assert not np.array_equal(a.values, b.values)


@pytest.mark.parametrize("bad", [dict(sensitivity=0.0), dict(epsilon=-1.0), dict(values=[np.nan])])
def test_bad_arguments(bad):
    args = dict(values=[1.0], sensitivity=1.0, epsilon=1.0) | bad
    with pytest.raises(ConfigError):
        laplace(**args)

"""The one-run audit's epsilon lower bound (Steinke, Nasr, Jagielski 2023) on simulations with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.one_run_audit import (
    audit_guesses,
    best_audit,
    draw_inclusion,
    epsilon_lower_bound,
    p_value,
)


def test_hand_computed_case_all_guesses_right_without_delta():
    # r = v = 10, delta = 0: p-value = q^10 with q = e^eps / (1 + e^eps); p = 0.05 at q = 0.05^(1/10),
    # eps = log(q / (1 - q)) = 1.0517...
    q = 0.05 ** 0.1
    expected = math.log(q / (1 - q))
    assert p_value(10, 10, 10, expected, 0.0) == pytest.approx(0.05, rel=1e-9)
    assert epsilon_lower_bound(10, 10, 10, 0.0, 0.05, steps=60) == pytest.approx(expected, abs=1e-9)


def test_p_value_at_eps_zero_is_the_fair_coin_tail_plus_the_delta_term():
    # eps = 0: q = 1/2, beta = P[Bin(4, 1/2) >= 3] = 5/16; alpha = max over i of P[3 - i <= Bin < 3] / i
    # = max(6/16, (6+4)/16/2, (6+4+1)/16/3) = 6/16; p = 5/16 + 6/16 x delta x 2m
    assert p_value(4, 4, 3, 0.0, 0.0) == pytest.approx(5 / 16)
    assert p_value(4, 4, 3, 0.0, 0.01) == pytest.approx(5 / 16 + 6 / 16 * 0.01 * 8)
    assert p_value(4, 4, 3, 0.0, 1.0) == 1.0  # capped


def test_bound_is_zero_for_coin_flip_guesses():
    rng = np.random.default_rng(0)  # seeded: random scores carry no information about the coins
    included = rng.random(1_000) < 0.5
    bounds = [best_audit(rng.random(1_000), included, delta=1e-5).epsilon_lower_bound for _ in range(20)]
    # each bound is > 0 with probability <= 5 %; three or more of 20 has probability < 8 %, and the seed is fixed
    assert sum(b > 0 for b in bounds) <= 2 and max(bounds) < 0.3
    # exactly half right out of many guesses cannot reject eps = 0
    assert epsilon_lower_bound(1_000, 500, 250, 1e-5) == 0.0


def test_bound_grows_with_accuracy_and_with_guesses():
    bounds = [epsilon_lower_bound(1_000, 200, v, 1e-5) for v in (100, 120, 150, 180, 200)]
    assert bounds[0] == 0.0 and all(a < b for a, b in zip(bounds, bounds[1:], strict=False))
    # the same accuracy on more guesses is stronger evidence
    assert epsilon_lower_bound(1_000, 100, 90, 1e-5) < epsilon_lower_bound(1_000, 400, 360, 1e-5)
    # delta weakens the bound
    assert epsilon_lower_bound(1_000, 200, 180, 1e-3) < epsilon_lower_bound(1_000, 200, 180, 0.0)


def test_bound_never_exceeds_the_true_epsilon_of_randomized_response():
    """Canaries whose guesses come from eps-randomized response (correct w.p. e^eps / (1 + e^eps)) are an
    eps-DP mechanism: the bound may pass eps with probability at most 5 %; over 200 seeded trials we
    allow 10 % (a Binomial(200, 0.05) exceeds 20 with probability < 0.1 %), and on average it stays below."""
    rng = np.random.default_rng(1)
    eps, m = 2.0, 1_000
    q = math.exp(eps) / (1 + math.exp(eps))
    bounds = [epsilon_lower_bound(m, m, int(rng.binomial(m, q)), 0.0) for _ in range(200)]
    assert sum(b > eps for b in bounds) <= 20
    assert np.mean(bounds) < eps and np.mean(bounds) > 1.5  # tight: a perfect attack on RR comes close


def test_audit_guesses_counts_top_as_in_and_bottom_as_out():
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.5])
    included = np.array([True, False, False, False, True])
    result = audit_guesses(scores, included, 2, 2, delta=0.0)
    # top 2: indices 0 (in, right) and 1 (out, wrong); bottom 2: indices 2 and 3 (both out, right)
    assert (result.guesses, result.correct) == (4, 3)
    perfect = audit_guesses(included.astype(float), included, 2, 3, delta=0.0)
    assert perfect.correct == 5 and perfect.epsilon_lower_bound > 0


def test_best_audit_keeps_the_bound_valid_by_splitting_beta():
    included = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    scores = included.astype(float)  # a perfect attack
    best = best_audit(scores, included, delta=0.0)
    assert best.beta == 0.05 and best.correct == best.guesses
    # the best try, tested at beta / (number of tries), is below the same try tested at beta alone
    alone = epsilon_lower_bound(200, best.guesses, best.correct, 0.0, 0.05)
    assert 0 < best.epsilon_lower_bound < alone


def test_inclusion_is_a_fair_coin_from_os_entropy():
    a, b = draw_inclusion(4_000), draw_inclusion(4_000)
    assert a.dtype == bool and not np.array_equal(a, b)
    assert abs(a.mean() - 0.5) < 0.05  # sd 0.008: a 6-sigma margin


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError):
        p_value(10, 5, 6, 1.0, 0.0)
    with pytest.raises(ConfigError):
        epsilon_lower_bound(10, 5, 3, 0.0, beta=1.5)
    with pytest.raises(ConfigError):
        audit_guesses(np.zeros(3), np.zeros(3, bool), 2, 2, delta=0.0)

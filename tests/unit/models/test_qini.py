"""Qini curves from binned counts against a direct, per-customer computation (no library reference needed)."""

from __future__ import annotations

import numpy as np
import pytest

from fedinsight.models.qini import bin_counts, curve_from_bins, exact_curve


def _direct_qini(score, treated, converted):  # noqa: ANN001, ANN202 - the textbook loop, customer by customer
    order = np.argsort(-np.asarray(score), kind="stable")
    nt = yt = nc = yc = 0.0
    shares, gains = [0.0], [0.0]
    for i in order:
        if treated[i]:
            nt, yt = nt + 1, yt + converted[i]
        else:
            nc, yc = nc + 1, yc + converted[i]
        shares.append((nt + nc) / len(score))
        gains.append(yt - (yc * nt / nc if nc else 0.0))
    shares, gains = np.array(shares), np.array(gains)
    return float(np.trapezoid(gains - shares * gains[-1], shares) / len(score)), shares, gains


def test_a_hand_computed_curve():
    # scores 4 > 3 > 2 > 1; treated, control, treated, control; only the first converts: gain 1 from the start
    curve = exact_curve(np.array([4.0, 3.0, 2.0, 1.0]), np.array([True, False, True, False]), np.array([1, 0, 0, 0]))
    assert curve.share.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve.gain.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert curve.coefficient == pytest.approx((0.875 - 0.5) / 4)  # area 0.875, random line's 0.5, 4 customers
    assert curve.targeting_ratio(0.3) == pytest.approx(1.0 / 0.3)


def test_exact_and_binned_curves_equal_the_direct_computation():
    rng = np.random.default_rng(3)
    n = 2_000
    score, treated = rng.random(n), rng.random(n) < 0.5
    converted = (rng.random(n) < 0.05 + 0.2 * score * treated).astype(float)
    direct, shares, gains = _direct_qini(score, treated, converted)
    exact = exact_curve(score, treated, converted)
    assert exact.coefficient == pytest.approx(direct, rel=1e-9)
    np.testing.assert_allclose(exact.gain, gains)
    # bins whose edges are the customers' own (distinct) scores: one customer per bin, the same curve
    edges = np.sort(score)[:-1] + 1e-12
    binned = curve_from_bins(*bin_counts(score, treated, converted, edges))
    assert binned.coefficient == pytest.approx(direct, rel=1e-9)
    assert direct > 0.005  # the planted uplift grows with the score: the curve is above the random line


def test_bins_are_highest_score_first_and_noisy_negatives_count_zero():
    counts = bin_counts(np.array([0.9, 0.1, 0.5]), np.array([True, True, False]), np.array([1.0, 0.0, 1.0]),
                        np.array([0.3, 0.6]))
    assert counts[0].tolist() == [1, 0, 1] and counts[2].tolist() == [0, 1, 0]  # 0.9 first, 0.1 last
    noisy = curve_from_bins(np.array([-5.0, 10.0]), np.array([-1.0, 3.0]), np.array([10.0, -2.0]),
                            np.array([2.0, 0.0]))
    assert noisy.share[1] == pytest.approx(10 / 20) and noisy.gain[1] == pytest.approx(0.0)
    assert noisy.customers == 20.0


def test_random_scores_give_a_qini_near_zero_and_a_ratio_near_one():
    rng = np.random.default_rng(4)
    n = 200_000
    treated = rng.random(n) < 0.5
    converted = (rng.random(n) < np.where(treated, 0.15, 0.05)).astype(float)  # a homogeneous effect
    curve = exact_curve(rng.random(n), treated, converted)
    # the curve of a random ranking is the random line up to sampling noise (sd of the gain at 30 % ~ 60)
    assert abs(curve.coefficient) < 0.003
    assert curve.targeting_ratio(0.3) == pytest.approx(1.0, abs=0.1)

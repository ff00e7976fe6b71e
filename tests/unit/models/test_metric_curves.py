"""Chart data for the report: ROC / gain / calibration read off the additive summaries."""

from __future__ import annotations

import numpy as np

from fedinsight.models.metrics import EvalSummary, exact_curves, roc_auc, summary_curves


def _trapezoid(x: list[float], y: list[float]) -> float:
    xs, ys = np.asarray(x), np.asarray(y)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))


def _data(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y - 1)))
    return y, p


def test_roc_curve_area_matches_exact_auc_and_runs_corner_to_corner() -> None:
    y, p = _data()
    curves = summary_curves(EvalSummary.compute(y, p), max_points=1000)
    roc = curves["roc"]
    assert roc["fpr"][0] == 0 and roc["tpr"][0] == 0
    assert abs(roc["fpr"][-1] - 1) < 1e-12 and abs(roc["tpr"][-1] - 1) < 1e-12
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)
    assert abs(_trapezoid(roc["fpr"], roc["tpr"]) - roc_auc(y, p)) < 5e-3


def test_summed_partner_summaries_give_the_pooled_curves() -> None:
    y, p = _data()
    halves = EvalSummary.compute(y[:1500], p[:1500]) + EvalSummary.compute(y[1500:], p[1500:])
    split, pooled = summary_curves(halves), summary_curves(EvalSummary.compute(y, p))
    assert split.keys() == pooled.keys()
    for name in ("roc", "gain", "calibration"):
        for key, values in pooled[name].items():
            assert np.allclose(split[name][key], values, rtol=1e-12, atol=1e-12), (name, key)


def test_gain_curve_of_a_perfect_ranking_captures_all_buyers_at_the_positive_rate() -> None:
    y = np.array([1.0] * 20 + [0.0] * 80)
    p = np.where(y > 0, 0.9, 0.1)
    gain = summary_curves(EvalSummary.compute(y, p))["gain"]
    # after the first (all-positive) bin: 20 % targeted, 100 % of the buyers captured
    assert gain["targeted"][1] == 0.2 and gain["captured"][1] == 1.0


def test_calibration_bins_hold_mean_prediction_and_observed_rate() -> None:
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0], dtype=float)
    p = np.array([0.15, 0.15, 0.15, 0.15, 0.85, 0.85, 0.85, 0.85])
    cal = summary_curves(EvalSummary.compute(y, p))["calibration"]
    assert cal["n"] == [4.0, 4.0]
    assert np.allclose(cal["predicted"], [0.15, 0.85]) and np.allclose(cal["observed"], [0.25, 0.75])


def test_thinning_keeps_both_ends_and_the_limit() -> None:
    y, p = _data(20000, 1)
    roc = summary_curves(EvalSummary.compute(y, p), max_points=25)["roc"]
    assert len(roc["fpr"]) <= 25 and roc["fpr"][0] == 0 and abs(roc["fpr"][-1] - 1) < 1e-12


def test_rank_scores_keep_roc_and_drop_calibration() -> None:
    y, p = _data()
    expected_purchases = 5 * p**2  # monotone, not a probability
    curves = exact_curves(y, expected_purchases, probability=False, max_points=1000)
    assert "calibration" not in curves
    assert abs(_trapezoid(curves["roc"]["fpr"], curves["roc"]["tpr"]) - roc_auc(y, p)) < 5e-3


def test_tier_confusion_is_reported_as_a_matrix() -> None:
    y, p = _data(9)
    true_t, pred_t = np.array([0, 1, 2, 2, 0, 1, 1, 2, 0]), np.array([0, 1, 1, 2, 0, 0, 1, 2, 2])
    tiers = exact_curves(y, p, true_tiers=true_t, predicted_tiers=pred_t)["tiers"]
    assert tiers["labels"] == ["low", "mid", "high"]
    assert tiers["confusion"] == [[2, 0, 1], [1, 2, 0], [0, 1, 2]]

"""Metrics, and the mergeable per-partner summaries the coordinator pools them from."""

from __future__ import annotations

import numpy as np
import pytest

from fedinsight.models.metrics import (
    EvalSummary,
    assign_tiers,
    exact_metrics,
    expected_calibration_error,
    lift_top_decile,
    log_loss,
    pooled_metrics,
    roc_auc,
)


def _scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    p = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.2 * y - 1.0)))
    return y, p


def test_exact_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 0, 0, 0])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.3, 0.3, 0.05, 0.6])
    # pairs (pos, neg) ordered right: 0.35 beats 5 of 7 negatives, 0.8 beats 7, 0.9 beats 7
    assert roc_auc(y, s) == pytest.approx((5 + 7 + 7) / 21)
    assert lift_top_decile(y, s) == pytest.approx(1 / 0.3)  # top 1 customer (0.9) is a buyer
    assert log_loss(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([0.95, 0.05])) == pytest.approx(0.05)
    assert np.isnan(roc_auc(np.ones(3), np.array([0.1, 0.2, 0.3])))
    assert list(assign_tiers(np.array([0.0, 5.0, 10.0, 50.0]), (5.0, 20.0))) == [0, 0, 1, 2]


def test_pooled_metrics_from_partner_summaries_match_the_pooled_data():
    ys, ps = zip(*[_scores(n, seed) for seed, n in enumerate((300, 4000, 1500))], strict=True)
    spend = [np.abs(np.random.default_rng(9).normal(20, 10, len(y))) * y for y in ys]
    ltv = [p * 25 for p in ps]
    true_t = [assign_tiers(s, (0.0, 25.0)) for s in spend]
    pred_t = [assign_tiers(v, (5.0, 12.0)) for v in ltv]
    total = EvalSummary()
    for y, p, s, v, tt, pt in zip(ys, ps, spend, ltv, true_t, pred_t, strict=True):
        part = EvalSummary.compute(y, p, spend=s, ltv=v, true_tiers=tt, predicted_tiers=pt)
        total = total + EvalSummary.from_metrics(part.to_metrics())  # through the wire format
    pooled = pooled_metrics(total)
    cat = np.concatenate
    exact = exact_metrics(cat(ys), cat(ps), spend=cat(spend), ltv=cat(ltv), true_tiers=cat(true_t),
                          predicted_tiers=cat(pred_t))
    assert pooled["auc"] == pytest.approx(exact["auc"], abs=2e-3)  # binned on a fine logit grid
    assert pooled["lift_top_decile"] == pytest.approx(exact["lift_top_decile"], rel=0.02)
    for key in ("log_loss", "ece", "mae", "tier_accuracy", "n", "positive_rate"):
        assert pooled[key] == pytest.approx(exact[key], rel=1e-6), key


def test_summary_size_does_not_depend_on_customers():
    small = EvalSummary.compute(*_scores(10, 0)).to_metrics()
    large = EvalSummary.compute(*_scores(10_000, 1)).to_metrics()
    assert {k: len(v) if isinstance(v, list) else 1 for k, v in small.items()} == \
        {k: len(v) if isinstance(v, list) else 1 for k, v in large.items()}

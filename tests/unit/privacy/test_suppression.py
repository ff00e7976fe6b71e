"""Minimum group size: decided on noisy counts, counted in the response, and nothing derived leaks a hidden cell."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedinsight.core.errors import ConfigError, PartnerReplyError
from fedinsight.privacy.allocation import QueryNoise
from fedinsight.privacy.suppression import CONFIDENCE_95, check_min_group_size, suppressed
from fedinsight.tasks.insights.catalogue import (
    FeatureRulesSpec,
    Funnel,
    GoldenHours,
    LtvTiers,
    SegmentProfile,
)
from fedinsight.tasks.insights.results import Combined, CombinedQuery, build_insight

RULES = FeatureRulesSpec(as_of="2026-01-01")
NOISE = QueryNoise("gaussian", 5.0)
SEGMENTS = ("champions", "loyal", "potential", "at_risk", "hibernating")


def _profile(customers, *, variance=100.0) -> CombinedQuery:
    dims = (("rfm_segment", SEGMENTS),)
    n = np.asarray(customers, dtype=float)
    var = np.full(5, variance)
    return CombinedQuery({"customers": Combined(dims, n, var), "spend": Combined(dims, n * 100, var * 1e4),
                          "repurchasers": Combined(dims, n / 2, var)}, "gaussian", 3)


def _build(spec, cq, min_group_size=50):
    return build_insight(spec, cq, rules=RULES, min_group_size=min_group_size, noise=NOISE, epsilon=0.1, delta=1e-6)


def test_rule_is_applied_to_noisy_counts():
    np.testing.assert_array_equal(suppressed(np.array([49.9, 50.0, 1e6, -3.0, np.nan]), 50),
                                  [True, False, False, True, True])
    np.testing.assert_array_equal(suppressed(np.array([60.0, 66.0]), 50, 10.0), [False, False])  # no margin
    with pytest.raises(ConfigError, match="margin"):
        suppressed(np.array([1.0]), 50, 1.0, margin_sd=-1)


def test_optional_confidence_margin():
    # with noise sd 10 and a 95 % margin a count must clear 50 + 1.645 * 10 = 66.4
    np.testing.assert_array_equal(suppressed(np.array([60.0, 66.0, 66.5]), 50, 10.0, CONFIDENCE_95),
                                  [True, True, False])
    # a group truly of 10 customers seen through noise of sd 80 (ten partners' noise)
    rng = np.random.default_rng(1)  # simulating the decision rule, not drawing DP noise
    noisy = 10 + rng.normal(0, 80, 200_000)
    assert np.mean(~suppressed(noisy, 50, 80.0, CONFIDENCE_95)) < 0.02
    assert np.mean(~suppressed(noisy, 50, 80.0)) > 0.25  # the plain rule releases it often
    cq = _profile([1000, 49, 20, 700, 60])
    assert _build(SegmentProfile(name="p"), cq)["suppressed_groups"] == 2
    strict = build_insight(SegmentProfile(name="p"), cq, rules=RULES, min_group_size=50, noise=NOISE, epsilon=0.1,
                           delta=1e-6, margin_sd=CONFIDENCE_95)
    assert strict["suppressed_groups"] == 3 and strict["suppression_margin_sd"] == CONFIDENCE_95
    for bad in (0, -5, 2.5, True, "50"):
        with pytest.raises(ConfigError, match="min_group_size"):
            check_min_group_size(bad)


def test_small_groups_are_hidden_and_counted():
    insight = _build(SegmentProfile(name="p"), _profile([1000, 49, 20, 700, 67]))
    groups = {g["rfm_segment"]: g for g in insight["result"]["groups"]}
    assert [k for k, g in groups.items() if g.get("suppressed")] == ["loyal", "potential"]
    assert groups["loyal"] == {"rfm_segment": "loyal", "suppressed": True}  # no number at all
    assert insight["suppressed_groups"] == 2 and insight["groups"] == 5
    assert groups["hibernating"]["customers"]["value"] == 67.0
    lower = _build(SegmentProfile(name="p"), _profile([1000, 49, 20, 700, 67]), min_group_size=2)
    assert lower["suppressed_groups"] == 0


def test_suppressed_values_cannot_be_recovered_from_released_numbers():
    """Shares use released groups only: moving a suppressed group's noisy count changes no output."""
    a = _build(SegmentProfile(name="p"), _profile([1000, 49, 20, 700, 300]))
    b = _build(SegmentProfile(name="p"), _profile([1000, 3, 44, 700, 300]))
    assert json.dumps(a["result"]) == json.dumps(b["result"])
    shares = [g["share"]["value"] for g in a["result"]["groups"] if not g.get("suppressed")]
    assert sum(shares) == pytest.approx(1.0)


def test_rates_need_both_cells_released():
    dims = (("rfm_segment", SEGMENTS), ("stage", ("exposure", "click", "participate", "convert")))
    counts = np.array([[5000, 600, 300, 40]] * 5, dtype=float)
    cq = CombinedQuery({"customers": Combined(dims, counts, np.full(counts.shape, 25.0))}, "gaussian", 2)
    insight = _build(Funnel(name="f", by="rfm_segment"), cq)
    group = insight["result"]["groups"][0]
    assert group["customers"]["convert"] == {"suppressed": True}
    assert group["rates"]["convert_rate"] == {"suppressed": True}
    assert group["rates"]["conversion"] == {"suppressed": True}
    assert group["rates"]["click_rate"]["value"] == pytest.approx(600 / 5000)
    assert insight["suppressed_groups"] == 5


def test_golden_hour_ignores_suppressed_hours():
    dims_h = (("rfm_segment", SEGMENTS[:1]), ("hour", tuple(f"{h:02d}" for h in range(24))))
    dims_d = (("rfm_segment", SEGMENTS[:1]), ("weekday", ("mon", "tue", "wed", "thu", "fri", "sat", "sun")))
    hours = np.full((1, 24), 100.0)
    hours[0, 20] = 400.0
    days = np.full((1, 7), 10.0)  # every weekday below the threshold
    cq = CombinedQuery({"customers_by_hour": Combined(dims_h, hours, np.ones_like(hours)),
                        "customers_by_weekday": Combined(dims_d, days, np.ones_like(days))}, "laplace", 4)
    group = _build(GoldenHours(name="g", heatmap=False), cq)["result"]["groups"][0]
    assert group["golden_hour"] == "20" and group["best_weekday"] is None
    assert all(v == {"suppressed": True} for v in group["by_weekday"].values())
    assert "by_slot" not in group and "peak_slot" not in group
    with pytest.raises(PartnerReplyError, match="heatmap"):  # asked for, but the partners did not send it
        _build(GoldenHours(name="g"), cq)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SLOTS = tuple(f"{d}-{h:02d}" for d in WEEKDAYS for h in range(24))


def _golden_with_heatmap(slot_counts: np.ndarray) -> CombinedQuery:
    """Two groups; marginals comfortably large, the heatmap as given (shape 2 x 168)."""
    seg = ("rfm_segment", SEGMENTS[:2])
    hours, days = np.full((2, 24), 500.0), np.full((2, 7), 900.0)
    return CombinedQuery({
        "customers_by_hour": Combined((seg, ("hour", tuple(f"{h:02d}" for h in range(24)))), hours,
                                      np.full_like(hours, 25.0)),
        "customers_by_weekday": Combined((seg, ("weekday", WEEKDAYS)), days, np.full_like(days, 25.0)),
        "customers_by_slot": Combined((seg, ("slot", SLOTS)), slot_counts, np.full_like(slot_counts, 25.0))},
        "gaussian", 3)


def test_heatmap_cells_are_suppressed_one_by_one_and_shares_use_released_cells_only():
    slots = np.full((2, 168), 80.0)
    slots[0, SLOTS.index("thu-20")] = 400.0
    slots[0, SLOTS.index("mon-03")] = 12.0  # below 50: hidden
    slots[0, SLOTS.index("sun-23")] = 49.9
    slots[1] = 5.0  # the second group: every slot hidden
    insight = _build(GoldenHours(name="g"), _golden_with_heatmap(slots))
    first, second = insight["result"]["groups"]
    heat = first["by_slot"]
    assert list(heat) == list(WEEKDAYS) and all(list(heat[d]) == [f"{h:02d}" for h in range(24)] for d in heat)
    assert heat["mon"]["03"] == {"suppressed": True} and heat["sun"]["23"] == {"suppressed": True}
    cell = heat["thu"]["20"]
    assert cell["customers"]["value"] == 400.0 and set(cell["customers"]) >= {"value", "ci95", "noise_sd"}
    assert cell["customers"]["noise_sd"] == pytest.approx(5.0)
    released_total = 400.0 + 80.0 * 165
    assert cell["share"]["value"] == pytest.approx(400.0 / released_total)
    assert set(cell["share"]) >= {"value", "ci95", "noise_sd"} and cell["share"]["noise_sd"] > 0
    shares = [c["share"]["value"] for d in heat.values() for c in d.values() if not c.get("suppressed")]
    assert len(shares) == 166 and sum(shares) == pytest.approx(1.0)
    assert first["peak_slot"] == "thu-20" and first["golden_hour"] is not None
    assert second["peak_slot"] is None and all(c == {"suppressed": True} for d in second["by_slot"].values()
                                                for c in d.values())
    # every slot cell is a group for the suppression count: 2 x 168 slots + 2 x 24 hours + 2 x 7 weekdays
    assert insight["groups"] == 2 * (168 + 24 + 7) and insight["suppressed_groups"] == 2 + 168

    moved = slots.copy()
    moved[0, SLOTS.index("mon-03")] = 40.0  # a hidden cell's noisy count changes: nothing released changes
    moved[1] = 30.0
    again = _build(GoldenHours(name="g"), _golden_with_heatmap(moved))
    assert json.dumps(again["result"]) == json.dumps(insight["result"])


def test_ltv_growth_needs_both_periods():
    dims = (("ltv_tier", ("none", "low", "mid", "high", "top")),)
    now = np.array([500.0, 400, 300, 200, 100])
    prev = np.array([500.0, 400, 300, 200, 30])
    var = np.full(5, 4.0)
    cq = CombinedQuery({"customers": Combined(dims, now, var), "value": Combined(dims, now * 50, var),
                        "customers_prev": Combined(dims, prev, var), "value_prev": Combined(dims, prev * 50, var)},
                       "gaussian", 2)
    result = _build(LtvTiers(name="l"), cq)["result"]
    top = result["tiers"][-1]
    assert top["customers_prev"] == {"suppressed": True} and "growth" not in top
    assert result["fastest_growing_tier"] != "top"

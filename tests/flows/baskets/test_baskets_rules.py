"""The coordinator's estimates: suppression on noisy counts, interval coverage, and the rule filter."""

from __future__ import annotations

import numpy as np
import pytest

from fedinsight.tasks.baskets.basket import pair_index
from fedinsight.tasks.baskets.options import BasketsOptions
from fedinsight.tasks.baskets.rules import estimate
from fedinsight.tasks.baskets.server import select

ITEMS = ["tea", "cups", "milk", "soap"]


def _pairs(values: dict[tuple[int, int], float], m: int = 4) -> np.ndarray:
    out = np.zeros(m * (m - 1) // 2)
    for (a, b), v in values.items():
        out[pair_index(np.array([a]), np.array([b]), m)[0]] = v
    return out


def test_items_and_pairs_under_the_minimum_group_size_are_hidden_with_every_rate_built_on_them():
    items = np.array([900.0, 600.0, 45.0, 400.0])  # milk is under 50
    pairs = _pairs({(0, 1): 300.0, (0, 2): 40.0, (1, 2): 30.0, (0, 3): 49.0, (1, 3): 120.0, (2, 3): 60.0})
    out = estimate(ITEMS, 5000.0, items, pairs, sd=1.0, min_group_size=50, top=10)
    shown = {tuple(p["items"]) for p in out["pairs"]}
    assert shown == {("tea", "cups"), ("cups", "soap")}  # (milk, soap) has 60 customers but milk is hidden
    assert out["suppressed_items"] == 1 and out["suppressed_pairs"] == 4
    milk = next(i for i in out["items"] if i["item"] == "milk")
    assert milk == {"item": "milk", "suppressed": True}  # no count, no share
    hidden = estimate(ITEMS, 40.0, items, pairs, sd=1.0, min_group_size=50, top=10)
    assert hidden["customers"] is None and hidden["pairs"] == [] and hidden["suppressed_items"] == 4


def test_support_confidence_and_lift_are_the_ratios_of_the_counts():
    items = np.array([1000.0, 500.0, 0.0, 0.0])
    out = estimate(ITEMS, 10_000.0, items, _pairs({(0, 1): 250.0}), sd=1e-9, min_group_size=50, top=5)
    (pair,) = out["pairs"]
    assert pair["support"] == pytest.approx(0.025) and pair["confidence"] == pytest.approx(0.25)
    assert pair["confidence_reverse"] == pytest.approx(0.5) and pair["lift"] == pytest.approx(5.0)
    assert out["rules"] == [pair]


def test_a_pair_is_a_rule_only_when_its_link_clears_the_noise():
    # tea+cups: lift 1 exactly (unrelated); cups+soap: lift 2 but on few customers against a large noise sd
    items = np.array([2000.0, 1000.0, 0.0, 500.0])
    pairs = _pairs({(0, 1): 200.0, (1, 3): 100.0})
    quiet = estimate(ITEMS, 10_000.0, items, pairs, sd=1.0, min_group_size=50, top=5)
    assert [r["items"] for r in quiet["rules"]] == [["cups", "soap"]]
    noisy = estimate(ITEMS, 10_000.0, items, pairs, sd=40.0, min_group_size=50, top=5)
    assert noisy["rules"] == [] and len(noisy["pairs"]) == 2  # released, with intervals, but not a rule


def test_intervals_cover_the_exact_values_about_95_percent_of_the_time():
    """The intervals' maths on a seeded toy: exact counts plus Gaussian noise of the declared sd (numpy, seeded,
    so the check is exact and repeatable; OpenDP's own sampler is what the partners use and is checked in
    fedinsight.privacy.mechanisms). 2,000 draws: coverage of a 95 % interval lies in [0.93, 0.98] unless the
    interval maths is wrong (binomial sd 0.5 %; the log-lift interval is slightly conservative, about 0.96)."""
    rng = np.random.default_rng(7)
    total, items = 20_000.0, np.array([3000.0, 2000.0, 800.0, 600.0])
    pair_counts = {(0, 1): 900.0, (0, 2): 300.0, (1, 2): 400.0, (2, 3): 250.0}  # all far above 50 + 3 sd
    exact = estimate(ITEMS, total, items, _pairs(pair_counts), sd=1e-9, min_group_size=50, top=10)
    truth = {tuple(p["items"]): p for p in exact["pairs"]}
    sd = 60.0
    hits = {k: np.zeros(3) for k in truth}
    shown = dict.fromkeys(truth, 0)
    draws = 2000
    for _ in range(draws):
        noisy_pairs = _pairs(pair_counts) + rng.normal(0, sd, 6)
        out = estimate(ITEMS, total + rng.normal(0, sd), items + rng.normal(0, sd, 4), noisy_pairs, sd=sd,
                       min_group_size=50, top=10)
        for p in out["pairs"]:
            if tuple(p["items"]) not in truth:  # a pair of 0 customers shown by noise (P ~ 20 % at sd 60)
                continue
            shown[tuple(p["items"])] += 1
            t = truth[tuple(p["items"])]
            for n, key in enumerate(("support", "confidence", "lift")):
                lo, hi = p[f"{key}_ci95"]
                hits[tuple(p["items"])][n] += lo <= t[key] <= hi
    assert min(shown.values()) == draws
    coverage = np.array(list(hits.values())) / draws
    assert coverage.min() >= 0.93 and coverage.max() <= 0.98, coverage


def test_candidates_are_the_largest_summed_noisy_counts_reaching_the_minimum_group_size():
    options = BasketsOptions(candidates=2, min_group_size=50)
    replies = [[("tea", 400.0), ("cups", 30.0)], [("cups", 35.0), ("soap", 45.0)], [("milk", 49.0)]]
    chosen = select(replies, options)
    assert [c["item"] for c in chosen] == ["tea", "cups"]  # cups 65 summed over two partners; soap, milk < 50
    assert chosen[1]["partners"] == 2


def test_a_simulation_compares_the_released_pairs_with_the_exact_cut_baskets():
    import pandas as pd

    from fedinsight.tasks.baskets.baselines import compare

    # partner 1: 3 customers, two with tea+cups; partner 2: 1 customer with tea only. Exact: support 2/4, lift 2*4/(3*2)
    rows = [pd.DataFrame({"customer_id": ["a", "a", "b", "b", "c"], "item": ["tea", "cups", "tea", "cups", "soap"]}),
            pd.DataFrame({"customer_id": ["d"], "item": ["tea"]})]
    pair = {"items": ["tea", "cups"], "support": 0.51, "support_ci95": [0.45, 0.55]}
    summary = {"candidates": [{"item": "tea"}, {"item": "cups"}], "pairs": [pair], "rules": [pair]}
    out = compare(summary, rows, BasketsOptions(candidates=2))
    assert out["customers"] == 4 and out["support_error_pp_max"] == pytest.approx(1.0)
    assert out["support_ci95_coverage"] == 1.0
    assert out["rules"] == [{"items": ["tea", "cups"], "support": 0.5, "lift": pytest.approx(8 / 6)}]


def test_a_pair_count_that_is_mostly_noise_is_not_a_rule_however_large_its_lift():
    # as measured on the benchmark: ~10 true customers of two 1,000-customer items drawn as 190 (2.6 noise sds, which
    # one of 1,770 unrelated pairs reaches every few runs): lift 19 with a 95 % delta-method interval above 8
    names = [f"item {k:02d}" for k in range(60)]
    items = np.zeros(60)
    items[:2] = 1000.0
    pairs = np.zeros(60 * 59 // 2)
    pairs[0] = 190.0
    out = estimate(names, 100_000.0, items, pairs, sd=68.5, min_group_size=50, top=20)
    (pair,) = out["pairs"]
    assert pair["lift"] > 15 and pair["lift_ci95"][0] > 5
    assert out["rules"] == [] and pair["lift_rank_bound"] == 0.0


def test_the_report_shows_rules_or_says_plainly_that_none_clears_the_noise():
    from fedinsight.report.page import page
    from fedinsight.tasks.baskets.report import baskets_sections

    items = np.array([2000.0, 1000.0, 0.0, 500.0])
    pairs = _pairs({(0, 1): 200.0, (1, 3): 100.0})
    for sd, rule_shown in ((1.0, True), (40.0, False)):
        summary = {**estimate(ITEMS, 10_000.0, items, pairs, sd=sd, min_group_size=50, top=5), "max_items": 5}
        cards, sections = baskets_sections(summary)
        html = page("run", "", sections)
        assert "cups + soap" in html and "Lift says how many times" in html and len(cards) == 3
        assert ("No pair is bought together clearly more often" in html) is not rule_shown


def test_the_preview_states_the_noise_the_job_will_have():
    from fedinsight.tasks.baskets import TASK
    from fedinsight.tasks.baskets.client import selection_threshold
    from fedinsight.tasks.baskets.server import count_sd

    options = BasketsOptions(epsilon=1.0)
    preview = TASK.preview(options, 10)
    assert preview.data["count_noise_sd_summed"] == pytest.approx(count_sd(options, 10))
    assert preview.data["threshold"] == selection_threshold(options)
    assert f"{selection_threshold(options):,.0f} at a partner" in preview.rows[0][1]

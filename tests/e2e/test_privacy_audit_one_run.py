"""The one-run audit benchmark's core on a tiny synthetic partner: the report has the promised shape.

Nothing here asserts that a DP run's bound is below its claimed epsilon: that holds only with 95 %
probability by construction. The statistic's properties are tested on seeded simulations in
tests/unit/privacy/test_one_run_audit.py.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedinsight.privacy.one_run_audit import epsilon_lower_bound

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("one_run_benchmark", ROOT / "benchmarks" / "privacy_audit_one_run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # about 9 s: plans DP-SGD and trains four tiny models
def test_tiny_audit_reports_every_regime_side_by_side():
    bench = _load_benchmark()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)  # any partner's own features work: no dataset columns
    y = (x[:, 0] > 0).astype(np.float32)
    config = dataclasses.replace(bench.AuditConfig(), customers=60, canaries=40, models=2, epochs=3)
    report = bench.run(config, x, y, [2.0])
    plain, dp = report["results"]
    assert plain["training"] == "no DP" and plain["claimed_epsilon"] is None
    assert dp["training"] == "DP-SGD" and 1.9 < dp["claimed_epsilon"] <= 2.0  # the accountant's own figure
    # the most a 40-canary audit can show: every one of 40 guesses right, tested at beta / tries
    ceiling = epsilon_lower_bound(40, 40, 40, config.delta, config.beta)
    for row in (plain, dp):
        audit = row["one_run_audit"]
        assert audit["canaries"] == 40 and 0 < audit["guesses"] <= 40 and 0 <= audit["correct"] <= audit["guesses"]
        assert 0.0 <= row["empirical_epsilon_lower_bound_95"] <= ceiling
        assert len(row["bounds_of_every_run"]) == 2
        lira = row["lira"]
        assert lira["members"] + lira["nonmembers"] == 2 * 40 and 0.0 <= lira["tpr"] <= 1.0
    assert isinstance(report["goal_nonprivate_bound_above_every_dp_bound"], bool)
    assert isinstance(report["goal_every_dp_bound_below_claimed"], bool)


def _load_recommender_benchmark():
    spec = importlib.util.spec_from_file_location("recommender_audit_benchmark",
                                                  ROOT / "benchmarks" / "privacy_audit_recommender.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_recommender_audit_scores_every_canary_on_the_released_item_table():
    bench = _load_recommender_benchmark()
    rng = np.random.default_rng(0)
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(30)]})  # a partner's own catalogue
    interactions = pd.DataFrame({
        "customer_id": np.repeat([f"c{k}" for k in range(40)], 6),
        "item_id": [f"i{k}" for k in rng.integers(0, 30, 240)],
        "timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(240), unit="h"),
    })
    config = bench.RecommenderAuditConfig(customers=30, canaries=20, epochs=2, dim=4)
    for eps in (None, 2.0):
        row = bench.audit_run(config, interactions, items, eps)
        audit = row["one_run_audit"]
        assert audit["canaries"] == 20 and 0 < audit["guesses"] <= 20 and 0 <= audit["correct"] <= audit["guesses"]
        assert 0.0 <= row["empirical_epsilon_lower_bound_95"] <= epsilon_lower_bound(20, 20, 20, 1e-5)
        assert row["claimed_epsilon"] is None if eps is None else 1.9 < row["claimed_epsilon"] <= 2.0

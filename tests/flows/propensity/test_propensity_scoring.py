"""Scoring on the partner: the model file round-trips, the window moves with --as-of, bad files fail cleanly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.models.propensity import ModelBundle, SharedScaler, TargetScaler, build_model, get_weights
from fedinsight.tasks.propensity.features import FEATURES, FeatureCaps, LabelWindow, customer_table, unit_features
from fedinsight.tasks.propensity.scoring import score_customers, scoring_window

WINDOW = LabelWindow(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-04-01"), pd.Timestamp("2024-07-01"))


def _tx() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    days = rng.integers(0, 365, 600)
    return pd.DataFrame({"customer_id": [f"c{i % 150}" for i in range(600)],
                         "timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D"),
                         "amount": rng.gamma(2, 20, 600), "quantity": rng.integers(1, 4, 600)})


def _bundle(tmp_path, tx: pd.DataFrame) -> ModelBundle:
    unit = unit_features(customer_table(tx, WINDOW), WINDOW)
    bundle = ModelBundle(kind="mlp", features=FEATURES, weights=get_weights(build_model(len(FEATURES), "mlp", 3)),
                         scaler=SharedScaler.fit(unit), target=TargetScaler(0.35, FeatureCaps().log_unit),
                         tier_thresholds=(5.0, 20.0), config={**WINDOW.to_config(), **FeatureCaps().to_config()})
    bundle.save(tmp_path / "model.pt")
    return ModelBundle.load(tmp_path / "model.pt")


def test_model_file_round_trips_and_scores(tmp_path):
    tx = _tx()
    bundle = _bundle(tmp_path, tx)
    assert bundle.kind == "mlp" and bundle.tier_thresholds == (5.0, 20.0)
    scores = score_customers(bundle, tx)
    assert len(scores) == len(customer_table(tx, WINDOW))
    assert scores["as_of"].iloc[0] == WINDOW.cutoff and scores["horizon_days"].iloc[0] == WINDOW.holdout_days
    spend = scores["expected_spend"]
    expected_tier = np.where(spend > 20, "high", np.where(spend > 5, "mid", "low"))
    assert (scores["ltv_tier"].astype(str) == expected_tier).all()


def test_as_of_moves_the_window_keeping_its_lengths(tmp_path):
    tx = _tx()
    bundle = _bundle(tmp_path, tx)
    moved = scoring_window(bundle, "2024-10-01")
    assert moved.cutoff == pd.Timestamp("2024-10-01")
    assert moved.calibration_days == WINDOW.calibration_days and moved.holdout_days == WINDOW.holdout_days
    later = score_customers(bundle, tx, "2024-10-01")
    assert later["as_of"].iloc[0] == pd.Timestamp("2024-10-01")
    with pytest.raises(ConfigError, match="no customer bought anything"):
        score_customers(bundle, tx, "2030-01-01")
    with pytest.raises(ConfigError, match="not a date"):
        score_customers(bundle, tx, "next tuesday")


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="not a fedinsight propensity model"):
        ModelBundle.load(bad)

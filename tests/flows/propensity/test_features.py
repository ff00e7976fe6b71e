"""Per-customer features and labels as of a cutoff."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedinsight.core.errors import ConfigError, DataValidationError
from fedinsight.privacy.holdout import holdout_mask
from fedinsight.tasks.propensity.features import (
    CDNOW_WINDOW,
    FEATURES,
    LabelWindow,
    customer_table,
    spend_from_unit,
    unit_features,
    unit_spend,
)

WINDOW = LabelWindow(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-04-01"), pd.Timestamp("2024-07-01"))


def _tx(rows: list[tuple[str, str, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "quantity"]).assign(
        timestamp=lambda f: pd.to_datetime(f["timestamp"], format="ISO8601"))


def test_features_and_labels_by_hand():
    tx = _tx([
        # a: purchase days Jan 1 (two orders), Jan 11, Jan 31, Mar 1; buys again in May
        ("a", "2024-01-01 09:00", 10.0, 1), ("a", "2024-01-01 18:00", 5.0, 2), ("a", "2024-01-11", 20.0, 1),
        ("a", "2024-01-31", 30.0, 3), ("a", "2024-03-01", 40.0, 1), ("a", "2024-05-05", 7.5, 1),
        # b: one purchase, never again
        ("b", "2024-02-01", 100.0, 4),
        # c: first purchase after the cutoff: cannot be scored as of the cutoff
        ("c", "2024-04-02", 50.0, 1),
        # d: bought on the last calibration day and again after the holdout window (does not count)
        ("d", "2024-03-31 23:00", 12.0, 1), ("d", "2024-07-01", 99.0, 1),
    ])
    table = customer_table(tx, WINDOW)
    assert list(table.index) == ["a", "b", "d"]
    a, b, d = table.loc["a"], table.loc["b"], table.loc["d"]
    assert a["frequency"] == 3  # 4 distinct purchase days
    assert a["recency"] == 60  # Jan 1 -> Mar 1
    assert a["tenure"] == 91  # Jan 1 -> Apr 1
    assert a["days_since_last"] == 31
    assert a["monetary_total"] == pytest.approx(105.0)
    assert a["monetary_mean"] == pytest.approx(105.0 / 4)
    assert a["first_amount"] == pytest.approx(15.0)  # both orders of the first day
    assert a["quantity"] == 8  # calibration units only (not the May order)
    gaps = np.array([10.0, 20.0, 30.0])
    assert a["regularity"] == pytest.approx(gaps.std(ddof=1) / gaps.mean())
    assert a["dormancy"] == pytest.approx(3 * np.log((91 + 28) / (60 + 28)))
    assert (a["buys_again"], a["churn"], a["spend"]) == (1.0, 0.0, 7.5)
    assert (b["frequency"], b["recency"], b["regularity"], b["dormancy"]) == (0, 0, 0, 0)
    assert (b["buys_again"], b["churn"], b["spend"]) == (0.0, 1.0, 0.0)
    assert (d["buys_again"], d["spend"]) == (0.0, 0.0)  # July 1 is outside [cutoff, end)
    unit = unit_features(table, WINDOW)
    assert unit.shape == (3, len(FEATURES))
    assert unit.min() >= 0 and unit.max() <= 1


def test_unit_spend_round_trips_and_clamps():
    spend = np.array([0.0, 1.0, 250.0, 1e9])
    back = spend_from_unit(unit_spend(spend))
    assert back[:3] == pytest.approx(spend[:3])
    assert unit_spend(spend)[-1] == 1.0


def test_cdnow_follows_fader_hardie_lee(cdnow):
    table = customer_table(cdnow, CDNOW_WINDOW)
    assert len(table) == 23_570  # every customer's first purchase is in Q1 1997
    assert table["buys_again"].mean() == pytest.approx(0.299, abs=0.001)
    assert table["tenure"].between(CDNOW_WINDOW.calibration_days - 90 - 1, CDNOW_WINDOW.calibration_days).all()
    assert CDNOW_WINDOW.calibration_days == CDNOW_WINDOW.holdout_days == 273  # 39 weeks each


def test_holdout_split_is_by_customer_and_keyed():
    ids = [f"C{i:05d}" for i in range(20_000)]
    key = bytes(range(32))
    mask = holdout_mask(ids, 0.2, key)
    assert mask.mean() == pytest.approx(0.2, abs=0.01)
    # the same customer is held out wherever it is: on its partner or in the pool
    assert np.array_equal(holdout_mask(ids[5000:7000], 0.2, key), mask[5000:7000])
    assert not np.array_equal(holdout_mask(ids, 0.2, bytes(32)), mask)  # another key, another split


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="start < cutoff < end"):
        LabelWindow(pd.Timestamp("2024-04-01"), pd.Timestamp("2024-01-01"), pd.Timestamp("2024-07-01"))
    with pytest.raises(ConfigError, match="test-share"):
        holdout_mask(["a"], 1.5, bytes(32))
    with pytest.raises(ConfigError, match="secret key"):
        holdout_mask(["a"], 0.2, b"3")  # a seed is not a key
    with pytest.raises(DataValidationError, match="amount"):
        customer_table(pd.DataFrame({"customer_id": ["a"], "timestamp": [pd.Timestamp("2024-01-01")],
                                     "quantity": [1]}), WINDOW)

"""Customer vectors: public, fixed transforms into [0, 1]^d, the same ruler at every partner."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.tasks.segments.features import FEATURES, customer_vectors, describe, parse_features, raw_value, scale

AS_OF = "2026-01-01"
NAMES = ("recency", "frequency", "monetary", "basket")


def _tx(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"]).assign(
        timestamp=lambda f: pd.to_datetime(f["timestamp"], utc=True))


def test_each_feature_is_log_scaled_by_its_public_cap_and_clipped_to_the_unit_interval():
    tx = _tx([("a", "2025-12-31", 100.0), ("a", "2025-12-01", 300.0),  # 2 purchases, spend 400, last 1 day ago
              ("b", "2020-01-01", 1e9)])  # long ago, absurd spend: clipped
    v = customer_vectors(tx, AS_OF, NAMES)
    a = v.loc["a"]
    assert a["recency"] == pytest.approx(1 - math.log1p(1) / math.log1p(730))
    assert a["frequency"] == pytest.approx(math.log1p(2) / math.log1p(50))
    assert a["monetary"] == pytest.approx(math.log1p(400) / math.log1p(5000))
    assert a["basket"] == pytest.approx(math.log1p(200) / math.log1p(1000))
    assert v.loc["b"].tolist() == pytest.approx([0.0, math.log1p(1) / math.log1p(50), 1.0, 1.0])
    assert ((v >= 0) & (v <= 1)).all().all()
    assert (np.linalg.norm(v.to_numpy(), axis=1) <= math.sqrt(len(NAMES)) + 1e-12).all()


def test_a_customers_vector_does_not_depend_on_the_other_customers():
    alone = customer_vectors(_tx([("a", "2025-06-01", 50.0)]), AS_OF, NAMES)
    crowd = customer_vectors(_tx([("a", "2025-06-01", 50.0), *[(f"c{i}", "2025-12-30", 4000.0 + i)
                                                                for i in range(50)]]), AS_OF, NAMES)
    assert crowd.loc["a"].tolist() == pytest.approx(alone.loc["a"].tolist())


def test_only_purchases_before_the_reference_date_count():
    v = customer_vectors(_tx([("a", "2025-12-31", 10.0), ("a", "2026-01-01", 999.0), ("late", "2026-02-01", 5.0)]),
                         AS_OF, ("frequency", "monetary"))
    assert list(v.index) == ["a"]
    assert v.loc["a", "monetary"] == pytest.approx(scale(np.array([10.0]), 5000.0)[0])


def test_bad_input_is_one_typed_error_naming_what_to_fix():
    with pytest.raises(ConfigError, match="features"):
        parse_features("recency,age")
    with pytest.raises(ConfigError, match="as-of"):
        customer_vectors(_tx([("a", "2025-12-31", 1.0)]), "soon", NAMES)
    with pytest.raises(ConfigError, match="transactions"):
        customer_vectors(None, AS_OF, NAMES)


def test_centres_are_described_by_declared_bands_of_their_typical_raw_values():
    names = ("recency", "frequency", "monetary")
    def at(days: float, purchases: float, spend: float) -> list[float]:  # noqa: E306
        return [1 - scale(np.array([days]), 730)[0], scale(np.array([purchases]), 50)[0],
                scale(np.array([spend]), 5000)[0]]
    assert describe(np.array(at(10, 12, 2000)), names) == "very recent, very frequent, top spend"
    assert describe(np.array(at(400, 1, 20)), names) == "lapsed, one-off, low spend"
    assert raw_value(at(10, 12, 2000)[0], "recency") == pytest.approx(10)
    assert set(NAMES) < set(FEATURES)


def test_tenure_and_the_evening_share_in_the_partners_own_time_zone():
    tx = _tx([("a", "2025-01-01T11:00:00Z", 10.0), ("a", "2025-12-01T11:00:00Z", 10.0),  # 19:00 in Shanghai
              ("a", "2025-12-02T02:00:00Z", 10.0)])  # 10:00 in Shanghai
    utc = customer_vectors(tx, AS_OF, ("tenure", "evening"))
    shanghai = customer_vectors(tx, AS_OF, ("tenure", "evening"), "Asia/Shanghai")
    assert utc.loc["a", "tenure"] == pytest.approx(scale(np.array([365.0 - 11 / 24]), 3650.0)[0])
    assert utc.loc["a", "evening"] == 0.0 and shanghai.loc["a", "evening"] == pytest.approx(2 / 3)
    assert describe(shanghai.loc["a"].to_numpy(), ("tenure", "evening")) == "settling in, evening shoppers"  # 364.5 d
    from fedinsight.tasks.segments.features import partner_zone

    assert partner_zone({}) == "UTC" and partner_zone({"timezone": "Asia/Shanghai"}) == "Asia/Shanghai"
    with pytest.raises(ConfigError, match="time zone"):
        partner_zone({"timezone": "Mars/Olympus"})


def test_the_reference_date_comes_from_the_dataset_or_must_be_given(tmp_path):
    from fedinsight.federation.task import Simulated
    from fedinsight.tasks.segments import TASK
    from fedinsight.tasks.segments.options import SegmentsOptions

    def sim(dataset: str, builtin: bool, facts: dict) -> Simulated:  # noqa: FBT001
        return Simulated(dataset, builtin, tmp_path, [], tmp_path, 0, lambda purpose: {}, facts)

    assert TASK.simulation_options(SegmentsOptions(), sim("cdnow", True, {})) == {"as_of": "1998-07-01"}
    window = {"window": {"start": "2025-01-01", "end": "2025-12-31"}}
    assert TASK.simulation_options(SegmentsOptions(), sim("x", False, window)) == {"as_of": "2026-01-01"}
    assert TASK.simulation_options(SegmentsOptions(as_of="2020-01-01"), sim("x", False, {})) == {}
    with pytest.raises(ConfigError, match="--as-of is required"):
        TASK.simulation_options(SegmentsOptions(), sim("x", False, {}))


def test_centres_of_the_wrong_shape_are_refused_by_the_partner():
    import json

    from fedinsight.tasks.segments.client import centres_of
    from fedinsight.tasks.segments.options import SegmentsOptions

    options = SegmentsOptions(k=2, as_of=AS_OF)
    assert centres_of({"centres": json.dumps([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])}, options).shape == (2, 3)
    for bad in ([[0.1, 0.2]], [[0.1, 0.2, float("nan")], [0, 0, 0]], "no"):
        with pytest.raises(ConfigError, match="centres"):
            centres_of({"centres": json.dumps(bad)}, options)
    with pytest.raises(ConfigError, match="centres"):
        centres_of({}, options)

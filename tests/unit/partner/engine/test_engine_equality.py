"""DuckDB scans give exactly the pre-noise aggregates the pandas path gives, on a partner's own files, with
opted-out and erased customers absent (tests/support/engine_data.py explains why exact equality is fair)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.engine_data import ERASED, OPTED_OUT, own_tables, write_csv_partner

from fedinsight.partner.protection import find_policy, forget_customers
from fedinsight.partner.view import PartnerView
from fedinsight.privacy.tokenize import Tokenizer
from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features
from fedinsight.tasks.insights.customer_scan import aggregates_from_features, aggregates_from_scan, customer_scan
from fedinsight.tasks.propensity.customer_scan import customer_scan as propensity_scan
from fedinsight.tasks.propensity.customer_scan import table_from_scan
from fedinsight.tasks.propensity.features import LabelWindow, customer_table

WINDOW = LabelWindow(pd.Timestamp("2024-01-01"), pd.Timestamp("2025-01-01"), pd.Timestamp("2025-07-01"))


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    folder = write_csv_partner(tmp_path_factory.mktemp("own") / "shop", own_tables())
    forget_customers(list(ERASED), find_policy(folder), note="test")
    return folder


def _tokens(folder, ids) -> set[str]:
    return set(Tokenizer(find_policy(folder).tokenization_ring()).tokens(ids))


@pytest.mark.parametrize("rules", [FeatureRules(as_of="2026-03-01", window_days=180),
                                   FeatureRules(as_of="2025-09-15", window_days=90, events_from="2025-03-01",
                                                require_consent=False, ltv_tier_bounds=(50.0, 300.0, 900.0))])
def test_insights_aggregates_equal_pandas_exactly(shop, rules):
    view = PartnerView(shop, "analytics")
    expected = aggregates_from_features(customer_features(view.tables(), rules))
    got = aggregates_from_scan(view.scan(customer_scan(rules)), rules)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)
    customers = own_tables()["customers"]
    allowed = set(customers.loc[customers["consent"] != "no", "customer_id"]) - {e.strip() for e in ERASED}
    assert len(got) == len(allowed) and 40 < len(allowed) < 60
    assert got["purchases"].sum() > 0 and got["spend_now"].sum() > 0  # not an all-zero comparison


def test_opted_out_and_erased_customers_appear_nowhere(shop):
    view = PartnerView(shop, "analytics")
    got = view.scan(customer_scan(FeatureRules(as_of="2026-03-01")))
    absent = _tokens(shop, [*OPTED_OUT, *ERASED])
    assert absent.isdisjoint(got["customer_id"])
    assert _tokens(shop, ["0002"]) <= set(got["customer_id"])  # a consenting, non-erased customer is there
    assert not any(str(c).strip().isdigit() for c in got["customer_id"])  # only tokens leave the engine


def test_propensity_features_equal_pandas(shop):
    view = PartnerView(shop, "training")
    expected = customer_table(view.tables().transactions, WINDOW).sort_index()
    got = table_from_scan(view.scan(propensity_scan(WINDOW)), WINDOW)
    assert list(got.index) == list(expected.index) and len(got) > 40
    exact = [c for c in expected.columns if c != "regularity"]
    pd.testing.assert_frame_equal(got[exact], expected[exact], check_exact=True)
    # regularity: the same exact day gaps through another float formula (sum of squares vs pandas' std)
    np.testing.assert_allclose(got["regularity"], expected["regularity"], rtol=1e-12, atol=1e-12)
    assert _tokens(shop, [*OPTED_OUT, *ERASED]).isdisjoint(got.index)

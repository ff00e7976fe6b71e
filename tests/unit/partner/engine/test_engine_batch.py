"""The insights batch computed through the partner's engine (what a partner runs) gives exactly the pre-noise
aggregates of the pandas path, for every query of the catalogue, without the partner's tables ever being loaded
into pandas (tests/support/engine_data.py explains why exact equality is fair: amounts are whole quarters)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.engine_data import ERASED, EngineOnly, own_tables, write_csv_partner

from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.view import PartnerView
from fedinsight.tasks.insights.aggregates import compute
from fedinsight.tasks.insights.catalogue import default_queries
from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features
from fedinsight.tasks.insights.engine_features import engine_features
from fedinsight.tasks.propensity.client import partner_table
from fedinsight.tasks.propensity.features import LabelWindow, customer_table


def _queries(channels, campaigns, tx_channels) -> list[dict]:
    queries = [{"kind": q.kind, "params": q.params()}
               for q in default_queries(channels=channels, campaigns=campaigns, tx_channels=tx_channels)]
    return [*queries,  # a tight row cap, a group-by over events and one over customers' own columns
            {"kind": "group_by", "params": {"table": "transactions", "group_by": ["rfm_segment"], "value": "amount",
                                            "aggregates": ["sum", "count"], "bounds": [0.0, 400.0],
                                            "max_rows_per_customer": 2}},
            {"kind": "group_by", "params": {"table": "events", "group_by": ["channel", "region"],
                                            "keys": {"channel": channels, "region": ["north", "south"]},
                                            "max_rows_per_customer": 3}},
            {"kind": "group_by", "params": {"table": "customers", "group_by": ["region"],
                                            "keys": {"region": ["north", "south"]}, "value": "age",
                                            "aggregates": ["mean"], "bounds": [18.0, 90.0]}}]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    folder = write_csv_partner(tmp_path_factory.mktemp("own") / "shop", own_tables(customers=80))
    forget_customers(list(ERASED), find_policy(folder), note="test")
    return folder


@pytest.mark.parametrize("rules", [FeatureRules(as_of="2026-03-01", window_days=180),
                                   FeatureRules(as_of="2025-09-15", window_days=90, events_from="2025-03-01",
                                                require_consent=False)])
def test_every_catalogue_query_equals_the_pandas_path_exactly(shop, rules):
    view = PartnerView(shop, "analytics")
    queries = _queries(["sms", "mail"], ["spring sale", "vip"], ["store", "app"])
    expected = customer_features(view.tables(), rules)
    got = engine_features(EngineOnly(view), rules, queries)
    assert got.n == expected.n and 50 < got.n < 80
    for query in queries:
        want, have = (compute(query["kind"], f, query["params"]) for f in (expected, got))
        assert have.layout() == want.layout() and (have.l1, have.l2) == (want.l1, want.l2)
        np.testing.assert_array_equal(have.vector(), want.vector(), err_msg=str(query))
    assert sum(compute(q["kind"], got, q["params"]).vector().sum() for q in queries) > 0  # not all zeros


def test_a_batch_of_segments_only_reads_no_rows(shop):
    rules = FeatureRules(as_of="2026-03-01")
    queries = [{"kind": q.kind, "params": q.params()}
               for q in default_queries(channels=[], campaigns=[], tx_channels=["store"])[:3]]
    got = engine_features(EngineOnly(PartnerView(shop, "analytics")), rules, queries)
    assert len(got.transactions.cust) == len(got.events.cust) == 0 and got.purchases.sum() > 0


def test_propensity_partner_table_through_the_engine(shop):
    window = LabelWindow(pd.Timestamp("2024-01-01"), pd.Timestamp("2025-01-01"), pd.Timestamp("2025-07-01"))
    view = PartnerView(shop, "training")
    expected = customer_table(view.tables().transactions, window).sort_index()
    got = partner_table(EngineOnly(view), window)
    assert list(got.index) == list(expected.index) and len(got) > 40
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_mapped_exports_through_the_engine(tmp_path):
    """A partner's own exports through its mapping.toml: the same aggregates (¥ amounts in cents: pandas adds
    floats row by row and the engine exactly, so sums may differ in the last bits)."""
    from support.exports import write_cn_export

    from fedinsight.partner.policy_init import init_partner

    folder = tmp_path / "cn"
    write_cn_export(folder, customers=120)
    init_partner(folder)
    view = PartnerView(folder, "analytics")
    rules = FeatureRules(as_of="2026-01-01", window_days=180)
    queries = [{"kind": q.kind, "params": q.params()}
               for q in default_queries(channels=[], campaigns=[], tx_channels=[])]
    expected = customer_features(view.tables(), rules)
    got = engine_features(EngineOnly(view), rules, queries)
    assert got.n == expected.n > 50 and got.timezone == expected.timezone
    for query in queries:
        want, have = (compute(query["kind"], f, query["params"]) for f in (expected, got))
        np.testing.assert_allclose(have.vector(), want.vector(), rtol=1e-12, atol=1e-9, err_msg=str(query))


def test_a_missing_column_is_one_clear_error(tmp_path):
    from fedinsight.core.errors import DataValidationError

    tables = own_tables(customers=20)
    tables["transactions"] = tables["transactions"].drop(columns=["quantity"])
    folder = write_csv_partner(tmp_path / "shop", tables)
    window = LabelWindow(pd.Timestamp("2024-01-01"), pd.Timestamp("2025-01-01"), pd.Timestamp("2025-07-01"))
    with pytest.raises(DataValidationError, match="lack a column"):
        partner_table(EngineOnly(PartnerView(folder, "training")), window)

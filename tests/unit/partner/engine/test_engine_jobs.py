"""A real job's partner loads no whole table: the hello's facts and customer count, key discovery and scoring go
through the partner's engine and give exactly what the pandas path gives; whole jobs run with ``data()`` failing.

Exact equality is fair here: the engine's counts are integers and its tables' columns are names, so nothing
rounds (tests/support/engine_data.py explains the data: opted-out and erased customers, a stray space in ids).
"""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
from support.engine_data import ERASED, EngineOnly, own_tables, write_csv_partner
from support.federations import run_in_process

from fedinsight.federation.task import phase_of
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.view import PartnerView
from fedinsight.tasks.insights import discovery
from fedinsight.tasks.insights.client import table_columns
from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features
from fedinsight.tasks.insights.engine_discovery import engine_counts
from fedinsight.tasks.insights.spec import VOCABULARIES


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tables = own_tables(customers=80)
    events = tables["events"]
    events.loc[events.index[:40], "campaign"] = "o'brien \u00e9t\u00e9"  # a quote to escape, non-ASCII to order
    events.loc[events.index[40:45], "channel"] = "other"  # the reserved key: never released, never takes a place
    tables["transactions"]["category"] = [f"cat-{i % 7}" for i in range(len(tables["transactions"]))]
    folder = write_csv_partner(tmp_path_factory.mktemp("own") / "shop", tables)
    forget_customers(list(ERASED), find_policy(folder))
    return folder


def test_hello_facts_and_customer_count_equal_the_pandas_path(shop, tmp_path):
    view = PartnerView(shop, "analytics")
    data = view.tables()
    assert view.columns() == table_columns(data)
    assert view.count_customers() == data.num_customers
    # without a customers table: the people tables' ids, consent then decided by the policy's default
    lone = write_csv_partner(tmp_path / "lone", {k: v for k, v in own_tables(customers=30).items() if k != "customers"})
    forget_customers(["0004"], find_policy(lone))
    lone_view = PartnerView(lone, "analytics")
    assert lone_view.count_customers() == lone_view.tables().num_customers


@pytest.mark.parametrize("k", [1, 2])
def test_key_discovery_counts_equal_the_pandas_path(shop, k):
    dims = [{"name": n, "table": VOCABULARIES[n].table, "column": VOCABULARIES[n].column}
            for n in ("campaigns", "channels", "purchase_channels", "categories", "regions", "genders")]
    rules = FeatureRules.from_dict({"as_of": "2026-01-01", "events_from": "2025-02-01"})
    view = PartnerView(shop, "analytics")
    expected = discovery.local_counts(customer_features(view.tables(), rules), dims, k)
    got = engine_counts(EngineOnly(view), rules, dims, k)
    assert got == expected
    assert got["genders"] == {} and "other" not in got["channels"] and got["campaigns"]["o'brien \u00e9t\u00e9"] > 0


def test_key_discovery_of_a_column_with_thousands_of_values_sends_the_engine_no_value_list(tmp_path, monkeypatch):
    """A dimension with a value per row (an order note, a SKU): the counts still equal the pandas path's, the
    values a release may not carry (over 64 characters, a backslash, the reserved key) take no customer's place,
    and no scan's SQL lists the values (it would grow with them: megabytes of SQL text for a SKU column)."""
    from fedinsight.tasks.insights import engine_discovery

    tables = own_tables(customers=60)
    tx = tables["transactions"]
    tx["category"] = [f"sku-{i:05d}" for i in range(len(tx))]
    tx.loc[tx.index[::11], "category"] = "x" * 65
    tx.loc[tx.index[1::13], "category"] = "back\\slash"
    tx.loc[tx.index[2::17], "category"] = "other"
    folder = write_csv_partner(tmp_path / "skus", tables)
    sent: list[str] = []
    original = engine_discovery.first_keys_scan

    def recorded(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        scan = original(*args, **kwargs)
        sent.append(scan.sql)
        return scan

    monkeypatch.setattr(engine_discovery, "first_keys_scan", recorded)
    dims = [{"name": "categories", "table": "transactions", "column": "category"}]
    rules = FeatureRules.from_dict({"as_of": "2026-01-01"})
    view = PartnerView(folder, "analytics")
    expected = discovery.local_counts(customer_features(view.tables(), rules), dims, 2)
    got = engine_counts(EngineOnly(view), rules, dims, 2)
    assert got == expected and len(got["categories"]) > 100
    assert not {"other", "x" * 65, "back\\slash"} & set(got["categories"])
    assert sent and all("sku-" not in sql and len(sql) < 3_000 for sql in sent)




def _errors(run) -> list[str]:
    return [r.error.reason for r in run.grid.replies if r.has_error()]


@pytest.mark.slow
def test_an_insights_job_with_discovery_loads_no_table(shared_own_federation, tmp_path, no_whole_tables):
    spec = ('epsilon = 1.0\n[window]\nend = "2026-01-01"\n[keys]\nchannels = "discover"\n'
            '[[insight]]\nname = "funnel"\nkind = "funnel"\n'
            '[[insight]]\nname = "segments"\nkind = "segment_profile"\n')
    run = run_in_process("insights", shared_own_federation, tmp_path / "run", spec=spec, only="")
    assert _errors(run) == []
    phases = Counter(phase_of(m) for m in run.grid.sent)
    assert phases["hello"] == phases["discover"] == phases["compute"] == 3  # each partner: hello, discovery, batch
    assert run.summary["insights"]


@pytest.mark.slow
def test_a_propensity_job_loads_no_table(shared_own_federation, tmp_path, no_whole_tables):
    run = run_in_process("propensity", shared_own_federation, tmp_path / "run")
    assert _errors(run) == [] and Counter(phase_of(m) for m in run.grid.sent)["hello"] == 3


def test_scoring_through_the_engine_equals_the_pandas_path(shop):
    from fedinsight.tasks.propensity.customer_scan import customer_scan, table_from_scan
    from fedinsight.tasks.propensity.features import LabelWindow, customer_table

    window = LabelWindow(pd.Timestamp("2024-06-01"), pd.Timestamp("2025-06-01"), pd.Timestamp("2025-09-01"))
    view = PartnerView(shop, "analytics")
    engine = table_from_scan(view.scan(customer_scan(window)), window)
    pd.testing.assert_frame_equal(engine, customer_table(view.tables().transactions, window), check_exact=False,
                                  rtol=1e-12)
    tokens = pd.Series(engine.index[:5])
    assert view.identities(tokens).notna().all()

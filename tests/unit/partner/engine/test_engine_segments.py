"""Segments' customer vectors come from the partner's engine and equal the pandas path's; a whole segments job runs
with ``data()`` failing.

Equality is exact on counts, shares and money (integers and quarter amounts: tests/support/engine_data.py) and to
1e-12 relative on recency and tenure (days from microseconds in the engine, from nanoseconds' total seconds in
pandas: the same instant, divided differently). The scaling step is the same function on both paths.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
from support.engine_data import ERASED, OPTED_OUT, EngineOnly, own_tables, write_csv_partner
from support.federations import run_in_process

from fedinsight.core.errors import ConfigError
from fedinsight.federation.task import phase_of
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.view import PartnerView
from fedinsight.tasks.segments.customer_scan import engine_vectors
from fedinsight.tasks.segments.features import customer_vectors

ALL = ("recency", "frequency", "monetary", "basket", "tenure", "evening", "funnel", "channel:store",
       "channel:a'pp", "category:cat-1", "category:cat-9")



@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tables = own_tables(customers=80)
    tx = tables["transactions"]
    tx["category"] = [f"cat-{i % 7}" for i in range(len(tx))]
    tx.loc[tx.index[:30], "channel"] = " a'pp "  # a quote to escape, spaces both paths strip
    tx.loc[tx.index[30:36], "amount"] = 0.0  # free items: purchases without spend
    tx.loc[tx.index[36:40], "timestamp"] = "2025-12-31T23:59:59.250000"  # sub-second, just before as-of
    tables["events"].loc[tables["events"].index[:10], "stage"] = " Click"
    folder = write_csv_partner(tmp_path_factory.mktemp("own") / "shop", tables)
    forget_customers(list(ERASED), find_policy(folder))
    return folder


def _pandas(view: PartnerView, features, zone: str, as_of: str = "2026-01-01") -> pd.DataFrame:
    data = view.tables()
    return customer_vectors(data.transactions, as_of, features, zone, data.events)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kathmandu"])
def test_engine_vectors_equal_the_pandas_path(shop, zone):
    view = PartnerView(shop, "analytics")
    expected = _pandas(view, ALL, zone)
    got = engine_vectors(EngineOnly(view), "2026-01-01", ALL, zone)
    assert list(got.index) == list(expected.index) and len(got) > 50
    exact = [c for c in ALL if c not in ("recency", "tenure")]
    pd.testing.assert_frame_equal(got[exact], expected[exact], check_exact=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
    assert 0 < got["evening"].mean() < 1 and got["channel:a'pp"].max() > 0 and got["funnel"].max() == 1.0
    # opted-out and erased customers are nowhere among the vectors
    owners = set(view.identities(pd.Series(got.index)).str.strip())
    assert owners and not owners & {c.strip() for c in (*OPTED_OUT, *ERASED)}


def test_an_early_as_of_and_bad_inputs(shop, tmp_path):
    view = PartnerView(shop, "analytics")
    early = engine_vectors(EngineOnly(view), "2024-01-02", ("recency", "frequency"), "UTC")
    expected = _pandas(view, ("recency", "frequency"), "UTC", "2024-01-02")
    pd.testing.assert_frame_equal(early, expected, check_exact=False, rtol=1e-12)
    none = engine_vectors(EngineOnly(view), "2020-01-01", ("recency",), "UTC")
    assert none.empty and list(none.columns) == ["recency"]
    with pytest.raises(ConfigError, match="--as-of"):
        engine_vectors(EngineOnly(view), "someday", ("recency",), "UTC")
    # transactions without a channel column and no events table: the pandas path's refusals, named
    lone = write_csv_partner(tmp_path / "lone", {"transactions": own_tables(customers=30)["transactions"]
                                                 .drop(columns=["channel"])})
    with pytest.raises(ConfigError, match="channel"):
        engine_vectors(EngineOnly(PartnerView(lone, "analytics")), "2026-01-01", ("channel:app",), "UTC")
    with pytest.raises(ConfigError, match="events table"):
        engine_vectors(EngineOnly(PartnerView(lone, "analytics")), "2026-01-01", ("funnel",), "UTC")




@pytest.mark.slow
def test_a_segments_job_loads_no_table(shared_own_federation, tmp_path, no_whole_tables):
    run = run_in_process("segments", shared_own_federation, tmp_path / "run", iterations=1)
    assert [r.error.reason for r in run.grid.replies if r.has_error()] == []
    phases = Counter(phase_of(m) for m in run.grid.sent)
    assert phases["hello"] == phases["histogram"] == phases["sizes"] == 3 and phases["assign"] == 3
    assert len(run.summary["segments"]) == 3  # the job's k (tests/support/federations.py)

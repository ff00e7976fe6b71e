"""Baskets' purchases come from the partner's engine, counted per customer and item, and give exactly the baskets,
item counts and candidate counts of the pandas path (integers: nothing rounds); a whole baskets job runs with
``data()`` failing. Both item sources are covered: the transactions' category and the interactions + catalogue.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from support.engine_data import ERASED, OPTED_OUT, EngineOnly, own_tables, write_csv_partner
from support.federations import run_in_process

from fedinsight.core.errors import ConfigError
from fedinsight.federation.task import phase_of
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.view import PartnerView
from fedinsight.tasks.baskets.basket import baskets, candidate_counts, item_counts, purchases
from fedinsight.tasks.baskets.purchase_scan import engine_purchases


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tables = own_tables(customers=80)
    tx = tables["transactions"]
    tx["category"] = [f"cat-{i % 7}" for i in range(len(tx))]
    tx.loc[tx.index[:25], "category"] = " cat-1 "  # stripped on both paths: the same item as cat-1
    tx.loc[tx.index[25:30], "category"] = ""  # no item
    tx.loc[tx.index[30:35], "category"] = 'say "hi"'  # a name that may not travel
    folder = write_csv_partner(tmp_path_factory.mktemp("own") / "shop", tables)
    forget_customers(list(ERASED), find_policy(folder))
    return folder


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    tables = own_tables(customers=40)
    rng = np.random.default_rng(5)
    n = 300
    tables["interactions"] = pd.DataFrame({
        "customer_id": rng.choice(tables["customers"]["customer_id"], n),
        "item_id": [f"m{k}" for k in rng.integers(0, 12, n)],
        "timestamp": (pd.Timestamp("2024-06-01") + pd.to_timedelta(rng.integers(0, 400 * 86_400, n), unit="s"))
        .strftime("%Y-%m-%d %H:%M:%S")})
    genres = ["Drama|Romance", " Comedy ", "Drama", "", "Action|Drama|Comedy", "Sci-Fi"]
    tables["items"] = pd.DataFrame({"item_id": [f"m{k}" for k in range(12)],
                                    "genres": [genres[k % len(genres)] for k in range(12)]})
    tables["transactions"] = tables["transactions"].drop(columns=["channel"])  # no category: the catalogue gives items
    folder = write_csv_partner(tmp_path_factory.mktemp("own") / "films", tables)
    forget_customers(list(ERASED), find_policy(folder))
    return folder


def _check_equal(view: PartnerView, as_of: str, expected_source: str) -> pd.DataFrame:
    rows, source = purchases(view.tables(), as_of)
    got, engine_source = engine_purchases(EngineOnly(view), as_of)
    assert engine_source == source == expected_source
    assert got["n"].sum() == len(rows) and not got.empty
    for max_items in (1, 3):
        pd.testing.assert_frame_equal(_sorted(baskets(got, max_items)), _sorted(baskets(rows, max_items)))
        assert item_counts(baskets(got, max_items)) == item_counts(baskets(rows, max_items))
    candidates = sorted(set(rows["item"]))[:4]
    for a, b in zip(candidate_counts(got, candidates, 5, 2), candidate_counts(rows, candidates, 5, 2), strict=True):
        np.testing.assert_array_equal(a, b)
    owners = set(view.identities(pd.Series(got["customer_id"].unique())).str.strip())
    assert owners and not owners & {c.strip() for c in (*OPTED_OUT, *ERASED)}
    return got


@pytest.mark.parametrize("as_of", ["", "2025-03-01"])
def test_category_purchases_equal_the_pandas_path(shop, as_of):
    got = _check_equal(PartnerView(shop, "analytics"), as_of, "transactions.category")
    assert "cat-1" in set(got["item"]) and not {" cat-1 ", "", 'say "hi"'} & set(got["item"])


@pytest.mark.parametrize("as_of", ["", "2025-01-01"])
def test_catalogue_purchases_equal_the_pandas_path(films, as_of):
    got = _check_equal(PartnerView(films, "analytics"), as_of, "interactions + items.genres")
    assert {"Drama", "Romance", "Comedy"} <= set(got["item"])


def test_no_item_anywhere_is_the_same_config_error(tmp_path):
    tables = own_tables(customers=30)
    folder = write_csv_partner(tmp_path / "bare", {k: v for k, v in tables.items() if k != "events"})
    with pytest.raises(ConfigError, match="map a `category` column in its transactions"):
        engine_purchases(EngineOnly(PartnerView(folder, "analytics")))




@pytest.mark.slow
def test_a_baskets_job_loads_no_table(shared_own_federation, tmp_path, no_whole_tables):
    run = run_in_process("baskets", shared_own_federation, tmp_path / "run")
    assert [r.error.reason for r in run.grid.replies if r.has_error()] == []
    phases = Counter(phase_of(m) for m in run.grid.sent)
    assert phases["hello"] == phases["items"] == phases["pairs"] == 3

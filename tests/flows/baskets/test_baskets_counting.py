"""The partner-side counting of baskets: where items come from, the per-customer cut, and the bound every release's
noise is calibrated to (one customer moves each release by at most the declared amount)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import PartnerData
from fedinsight.federation.delta import provisional
from fedinsight.privacy.ledger import compose_epsilon
from fedinsight.tasks.baskets.basket import (
    baskets,
    candidate_counts,
    item_counts,
    pair_index,
    pairs_of,
    purchases,
)
from fedinsight.tasks.baskets.noise import pair_count, release_bound
from fedinsight.tasks.baskets.options import BasketsOptions


def _tx(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [r[0] for r in rows], "category": [r[1] for r in rows],
                         "timestamp": pd.to_datetime([r[2] for r in rows], utc=True), "amount": 1.0, "quantity": 1})


def test_items_come_from_the_transactions_category_and_the_window_cuts_them():
    data = PartnerData("p", transactions=_tx([("a", "tea", "2025-01-02"), ("a", "cups", "2025-03-01"),
                                              ("b", "tea", "2025-05-01"), ("b", None, "2025-01-01")]))
    rows, source = purchases(data)
    assert source == "transactions.category"
    assert sorted(map(tuple, rows.to_numpy())) == [("a", "cups"), ("a", "tea"), ("b", "tea")]
    early, _ = purchases(data, as_of="2025-02-01")
    assert list(map(tuple, early.to_numpy())) == [("a", "tea")]


def test_without_a_category_column_items_come_from_the_catalogue_genres_split_on_bars():
    inter = pd.DataFrame({"customer_id": ["u1", "u1", "u2"], "item_id": ["m1", "m2", "m2"],
                          "timestamp": pd.to_datetime(["2020-01-01"] * 3, utc=True)})
    items = pd.DataFrame({"item_id": ["m1", "m2"], "genres": ["Drama|Romance", "Comedy"]})
    rows, source = purchases(PartnerData("p", interactions=inter, items=items))
    assert source == "interactions + items.genres"
    assert sorted(map(tuple, rows.to_numpy())) == [("u1", "Comedy"), ("u1", "Drama"), ("u1", "Romance"),
                                                   ("u2", "Comedy")]


def test_no_category_anywhere_is_a_config_error_that_says_what_to_map():
    tx = _tx([("a", "x", "2025-01-01")]).drop(columns="category")
    with pytest.raises(ConfigError, match="map a `category` column in its transactions"):
        purchases(PartnerData("p", transactions=tx))
    items = pd.DataFrame({"item_id": ["m1"], "title": ["Film"]})  # a catalogue without category or genres
    inter = pd.DataFrame({"customer_id": ["u"], "item_id": ["m1"], "timestamp": pd.to_datetime(["2020-01-01"])})
    with pytest.raises(ConfigError, match="`category` or `genres`"):
        purchases(PartnerData("p", interactions=inter, items=items))


def test_a_basket_keeps_the_customers_most_bought_items_ties_by_name():
    rows = pd.DataFrame({"customer_id": ["a"] * 9 + ["b"],
                         "item": ["z", "z", "z", "y", "y", "d", "c", "b", "a", "q"]})
    kept = baskets(rows, 4)
    assert sorted(kept[kept.customer_id == "a"]["item"]) == ["a", "b", "y", "z"]  # z(3), y(2), then a, b by name
    assert list(kept[kept.customer_id == "b"]["item"]) == ["q"]
    only = baskets(rows, 4, allowed=["c", "d", "q"])
    assert sorted(only[only.customer_id == "a"]["item"]) == ["c", "d"]


def test_pair_index_is_the_upper_triangle_order():
    m = 7
    pairs = pairs_of(m)
    assert len(pairs) == pair_count(m)
    idx = pair_index(np.array([i for i, _ in pairs]), np.array([j for _, j in pairs]), m)
    assert idx.tolist() == list(range(len(pairs)))


def _toy(seed: int = 3, customers: int = 40, items: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 15, customers)  # some customers buy far more than max-items items
    return pd.DataFrame({"customer_id": np.repeat([f"c{k}" for k in range(customers)], n),
                         "item": [f"i{v}" for v in rng.integers(0, items, int(n.sum()))]})


@pytest.mark.parametrize("max_items", [2, 3, 5])
def test_removing_any_one_customer_moves_each_release_by_at_most_its_declared_bound(max_items):
    rows = _toy()
    candidates = [f"i{k}" for k in range(8)]  # i8 is not a candidate: its purchases count nowhere in round 2
    slots = 10  # two empty slots: the vector's shape is the job's, not the list's
    full = np.concatenate([[c] if np.isscalar(c) else c for c in candidate_counts(rows, candidates, slots, max_items)])
    items_full = item_counts(baskets(rows, max_items))
    worst_counts, worst_items = 0.0, 0.0
    for customer in rows["customer_id"].unique():
        rest = rows[rows.customer_id != customer]
        without = np.concatenate([[c] if np.isscalar(c) else c
                                  for c in candidate_counts(rest, candidates, slots, max_items)])
        worst_counts = max(worst_counts, float(np.linalg.norm(full - without)))
        items_rest = item_counts(baskets(rest, max_items))
        diff = [items_full.get(k, 0) - items_rest.get(k, 0) for k in items_full]
        assert all(d in (0, 1) for d in diff)  # round 1: each item count moves by 0 or 1 ...
        worst_items = max(worst_items, float(np.linalg.norm(diff)))
    assert worst_items <= math.sqrt(max_items) + 1e-12  # ... and at most L of them (L2 sqrt(L), the declared bound)
    assert worst_counts <= release_bound(max_items) + 1e-12  # round 2: L2 sqrt(1 + L + L(L-1)/2)
    assert worst_counts == pytest.approx(release_bound(max_items))  # reached by a customer with >= L candidates


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 4.0])
def test_the_two_releases_compose_to_the_jobs_epsilon(epsilon):
    options = BasketsOptions(epsilon=epsilon)
    plan = options.noise()
    assert compose_epsilon(plan.events(), provisional(options.delta)) == pytest.approx(epsilon, rel=1e-5)
    assert plan.selection > plan.counts  # round 2 gets the larger share of the budget

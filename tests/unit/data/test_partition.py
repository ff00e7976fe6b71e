"""Partitioners: seeded, deterministic, every customer in exactly one partner."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedinsight.core.errors import ConfigError
from fedinsight.data.federation import PartitionSpec, load_federation, partner_table
from fedinsight.data.partition import (
    dirichlet_partition,
    id_range_key,
    iid_partition,
    natural_partition,
    split_partner_tables,
    zip_region,
)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 300), st.integers(1, 12), st.integers(0, 10_000))
def test_iid_is_a_balanced_deterministic_assignment(n, k, seed):
    if n < k:
        with pytest.raises(ConfigError):
            iid_partition(n, k, seed)
        return
    a = iid_partition(n, k, seed)
    assert np.array_equal(a, iid_partition(n, k, seed))
    sizes = np.bincount(a, minlength=k)
    assert len(a) == n and sizes.max() - sizes.min() <= 1 and sizes.min() >= 1


def test_dirichlet_skews_labels_more_for_small_alpha():
    labels = np.repeat(np.arange(4), 500)

    def label_spread(alpha: float) -> float:
        a = dirichlet_partition(labels, 5, alpha, seed=3)
        table = pd.crosstab(a, labels, normalize="index").to_numpy()
        return float(table.max(axis=1).mean())  # share of each partner's dominant label

    assert label_spread(0.1) > label_spread(100.0) + 0.2
    assert label_spread(100.0) < 0.4  # near-uniform 0.25 per label


def test_dirichlet_deterministic_and_min_size():
    labels = np.repeat(["a", "b"], 100)
    a = dirichlet_partition(labels, 4, 0.5, seed=7, min_partition_size=5)
    assert np.array_equal(a, dirichlet_partition(labels, 4, 0.5, seed=7, min_partition_size=5))
    assert np.bincount(a, minlength=4).min() >= 5
    assert not np.array_equal(a, dirichlet_partition(labels, 4, 0.5, seed=8, min_partition_size=5))
    with pytest.raises(ConfigError, match="alpha"):
        dirichlet_partition(labels, 4, 0.0, seed=0)
    with pytest.raises(ConfigError, match="fewer than"):
        dirichlet_partition(labels, 4, 0.001, seed=0, min_partition_size=50, max_tries=3)


def test_natural_partition_keeps_each_key_in_one_partner():
    keys = np.array(list("0011122223333344445555556666789X"))
    a = natural_partition(keys, 4)
    assert set(a) == {0, 1, 2, 3}
    for key in set(keys):
        assert len(set(a[keys == key])) == 1
    with pytest.raises(ConfigError, match="distinct values"):
        natural_partition(np.array(["a", "a", "b"]), 3)


def test_zip_region_and_id_ranges():
    assert zip_region(["85711", "T8H1N", " 0213"]).tolist() == ["8", "X", "0"]
    assert id_range_key(["2", "10", "1"]).tolist() == ["02", "10", "01"]


def test_split_tables_follows_customers():
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"]})
    tx = pd.DataFrame({"customer_id": ["a", "a", "c", "b"], "amount": [1.0, 2.0, 3.0, 4.0]})
    items = pd.DataFrame({"item_id": ["i1"]})
    parts = split_partner_tables({"customers": customers, "transactions": tx, "items": items},
                                 customers["customer_id"], np.array([0, 1, 0]))
    assert parts["partner-0"].transactions["amount"].tolist() == [1.0, 2.0, 3.0]
    assert parts["partner-1"].transactions["amount"].tolist() == [4.0]
    assert parts["partner-0"].items is parts["partner-1"].items
    with pytest.raises(ConfigError, match="not in the partition"):
        split_partner_tables({"transactions": tx}, ["a", "b"], np.array([0, 1]))


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "natural"])
def test_cdnow_federation_covers_every_customer_once(cdnow, scheme):
    parts = load_federation("cdnow", PartitionSpec(partners=10, scheme=scheme, alpha=0.5, seed=1))
    assert len(parts) == 10
    ids = pd.concat([p.customers["customer_id"] for p in parts.values()])
    assert ids.is_unique and len(ids) == 23_570
    assert sum(len(p.transactions) for p in parts.values()) == len(cdnow)
    for p in parts.values():
        assert set(p.transactions["customer_id"]) <= set(p.customers["customer_id"])
    table = partner_table(parts)
    assert table.iloc[-1]["partner"] == "total" and table.iloc[-1]["customers"] == 23_570


def test_cdnow_natural_partition_is_contiguous_id_ranges():
    parts = load_federation("cdnow", PartitionSpec(partners=4, scheme="natural"))
    ranges = [(int(p.customers.customer_id.min()), int(p.customers.customer_id.max())) for p in parts.values()]
    assert all(hi < lo for (_, hi), (lo, _) in zip(ranges, ranges[1:], strict=False))


def test_movielens_zip_partition(movielens):
    parts = load_federation("movielens-100k", PartitionSpec(partners=5, scheme="natural", seed=0))
    regions = [set(zip_region(p.customers["zip_code"])) for p in parts.values()]
    for i, a in enumerate(regions):
        for b in regions[i + 1 :]:
            assert not a & b
    assert sum(len(p.interactions) for p in parts.values()) == 100_000
    assert all(len(p.items) == 1_682 for p in parts.values())


def test_unknown_partition_and_dataset():
    with pytest.raises(ConfigError, match="unknown partition"):
        PartitionSpec(scheme="random")
    with pytest.raises(ConfigError, match="neither a built-in"):
        load_federation("no-such-thing")


def test_partner_folder_reports_unknown_customers(tmp_path):
    from fedinsight.core.errors import DataValidationError
    from fedinsight.data.federation import load_partner_folder

    p = tmp_path / "partner-0"
    p.mkdir()
    (p / "customers.csv").write_text("customer_id,consent\na,true\n")
    (p / "transactions.csv").write_text("customer_id,timestamp,amount,quantity\na,2024-01-01,1,1\nzz,2024-01-02,1,1\n")
    with pytest.raises(DataValidationError, match=r"not in this partner's customers table in 1 row\(s\) \(lines 3\)"):
        load_partner_folder(tmp_path)

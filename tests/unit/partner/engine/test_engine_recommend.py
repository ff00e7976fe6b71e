"""The recommender's split comes from the partner's engine and equals the pandas path's; a whole recommender job
runs with ``data()`` failing.

The split's ranking (latest first, same-instant ties by the tie key) is computed in SQL by the engine and in pandas
by :func:`fedinsight.models.ranking.ranked_pairs`; the test data ties three items at every customer's latest
instant, so a different tie rule on either side changes the test items.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from support.engine_data import ERASED, OPTED_OUT, EngineOnly, own_interactions, own_tables, write_csv_partner
from support.federations import run_in_process

from fedinsight.core.errors import DataValidationError
from fedinsight.federation.task import phase_of
from fedinsight.models.ranking import Catalogue, InteractionSplit, leave_latest_out
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.view import PartnerView
from fedinsight.tasks.recommend.client import partner_split
from fedinsight.tasks.recommend.interaction_scan import engine_pairs

CATALOGUE = Catalogue.from_ids([f"I{i:03d}" for i in range(40)])


def _shop(folder, shuffle: int | None = None):
    tables = own_tables(customers=80)
    inter = own_interactions(tables)
    if shuffle is not None:
        inter = inter.sample(frac=1.0, random_state=shuffle).reset_index(drop=True)
    write_csv_partner(folder, {**tables, "interactions": inter})
    forget_customers(list(ERASED), find_policy(folder))
    return folder


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return _shop(tmp_path_factory.mktemp("rec") / "shop")


def _assert_same(got: InteractionSplit, expected: InteractionSplit, at_least: int = 50) -> None:
    assert got.customer_ids == expected.customer_ids and got.num_customers > at_least
    for name in ("train_indptr", "train_items", "test_items"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    assert (got.dropped_customers, got.dropped_rows) == (expected.dropped_customers, expected.dropped_rows)


@pytest.mark.parametrize("skip", [0, 1, 2])
def test_engine_split_equals_the_pandas_path(shop, skip):
    view = PartnerView(shop, "recommendation")
    expected = leave_latest_out(view.tables().interactions, CATALOGUE, skip_latest=skip)
    got = engine_pairs(EngineOnly(view), CATALOGUE).split(skip)
    _assert_same(got, expected)
    assert got.dropped_rows > 0  # the X items
    owners = view.identities(pd.Series(got.customer_ids)).str.strip()
    assert not set(owners) & {c.strip() for c in (*OPTED_OUT, *ERASED)}
    assert owners.isin(["0002"]).any()  # padded ids counted as their customer (their rows in the training items)


def test_the_test_item_is_one_of_the_tied_latest_and_row_order_does_not_matter(shop, tmp_path):
    view = PartnerView(shop, "recommendation")
    inter = view.tables().interactions
    split = engine_pairs(EngineOnly(view), CATALOGUE).split()
    latest = inter.assign(item=inter["item_id"].astype(str)).loc[inter["item_id"].astype(str).str.startswith("I")]
    last = latest.loc[latest.groupby("customer_id")["timestamp"].transform("max") == latest["timestamp"]]
    tied = last.groupby("customer_id")["item"].agg(set)
    test_items = [CATALOGUE.item_ids[i] for i in split.test_items]
    assert all(item in tied[c] for c, item in zip(split.customer_ids, test_items, strict=True))
    assert len(set(test_items)) > 5  # ties are not settled by the same item everywhere
    # the same rows in another order (another export of the same data): the same split on both paths (another
    # folder has another tokenization key: compared by the customers' own ids)
    shuffled = PartnerView(_shop(tmp_path / "shuffled", shuffle=7), "recommendation")
    expected = _by_owner(view, split)
    assert _by_owner(shuffled, engine_pairs(EngineOnly(shuffled), CATALOGUE).split()) == expected
    assert _by_owner(shuffled, leave_latest_out(shuffled.tables().interactions, CATALOGUE)) == expected


def _by_owner(view: PartnerView, split: InteractionSplit) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Each customer's own id -> (test item, training items)."""
    owners = view.identities(pd.Series(split.customer_ids)).str.strip()
    return {o: (int(split.test_items[c]), tuple(int(i) for i in split.items_of(c))) for c, o in enumerate(owners)}


def test_a_parquet_directory_gives_the_csv_split(shop, tmp_path):
    folder = tmp_path / "lake"
    folder.mkdir()
    for name in ("customers", "transactions", "events"):
        (folder / f"{name}.csv").write_bytes((shop / f"{name}.csv").read_bytes())
    inter = pd.read_csv(shop / "interactions.csv", dtype=str, keep_default_na=False)
    (folder / "interactions").mkdir()
    for k, part in enumerate(np.array_split(np.arange(len(inter)), 3)):
        inter.iloc[part].to_parquet(folder / "interactions" / f"part-{k}.parquet", index=False)
    forget_customers(list(ERASED), find_policy(folder))
    csv = engine_pairs(EngineOnly(PartnerView(shop, "recommendation")), CATALOGUE).split()
    lake_view = PartnerView(folder, "recommendation")
    lake = engine_pairs(EngineOnly(lake_view), CATALOGUE).split()
    assert _by_owner(lake_view, lake) == _by_owner(PartnerView(shop, "recommendation"), csv)


def test_a_partner_without_interactions_is_refused_in_its_words(tmp_path):
    folder = write_csv_partner(tmp_path / "none", own_tables(customers=20))
    config = {"item-ids": list(CATALOGUE.item_ids), "job-id": "j1"}

    class Shop(EngineOnly):
        partner_id = "shop-none"

    with pytest.raises(DataValidationError, match="no interactions table"):
        partner_split(Shop(PartnerView(folder, "recommendation")), config)


@pytest.mark.slow
def test_a_recommender_job_loads_no_table(shared_own_federation, tmp_path, no_whole_tables):
    run = run_in_process("recommend", shared_own_federation, tmp_path / "run")
    assert [r.error.reason for r in run.grid.replies if r.has_error()] == []
    phases = Counter(phase_of(m) for m in run.grid.sent)
    assert phases["hello"] == 3
    trains = [m for m in run.grid.sent if m.metadata.message_type.startswith("train")]
    assert len(trains) == 6  # two rounds (tests/support/federations.py) x three partners
    assert run.summary["rounds"] == 2


def test_float_ids_in_parquet_are_the_ids_the_pandas_view_reads(tmp_path):
    """pandas writes ids as floats to Parquet whenever one is missing: ``1.0`` is customer ``1`` and item ``1`` on
    both paths (the engine wrote "1.0": the partner's customers missed their consent rows, its items the catalogue)."""
    folder = write_csv_partner(tmp_path / "floats", {"customers": pd.DataFrame(
        {"customer_id": [str(k) for k in range(1, 21)], "consent": ["yes"] * 20})})
    rng = np.random.default_rng(2)
    inter = pd.DataFrame({"customer_id": np.repeat(np.arange(1.0, 21.0), 4), "item_id": rng.integers(0, 9, 80) * 1.0,
                          "timestamp": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 10**6, 80), "s")})
    inter.to_parquet(folder / "interactions.parquet", index=False)
    view = PartnerView(folder, "recommendation")
    catalogue = Catalogue.from_ids([str(k) for k in range(10)])
    expected = leave_latest_out(view.tables().interactions, catalogue)
    got = engine_pairs(EngineOnly(view), catalogue).split()
    _assert_same(got, expected, at_least=15)
    assert got.dropped_rows == 0


def test_blank_items_or_times_are_refused_before_any_scan(tmp_path):
    tables = own_tables(customers=20)
    inter = own_interactions(tables)
    inter.loc[3, "item_id"] = " "
    inter.loc[7, "timestamp"] = ""
    folder = write_csv_partner(tmp_path / "blank", {**tables, "interactions": inter})
    with pytest.raises(DataValidationError, match="no value in a column every row needs") as caught:
        PartnerView(folder, "recommendation").check_types()
    assert {p.column for p in caught.value.problems} == {"item_id", "timestamp"}


def test_numbers_from_another_read_of_the_files_are_refused():
    """The pairs' customer and item numbers must be exactly those the people and items scans handed out: a file
    replaced between the three queries would give one customer's items to another's token."""
    from fedinsight.tasks.recommend.interaction_scan import EnginePairs

    pairs = pd.DataFrame({"customer_no": [1, 1, 2, 2], "item_no": [1, 2, 1, 2], "n": [1] * 4, "recency": [1, 2, 1, 2]})
    people = pd.DataFrame({"customer_id": ["tk_a", "tk_b"], "customer_no": [1, 2]})
    things = pd.DataFrame({"item_id": ["I000", "I001"], "item_no": [1, 2]})
    split = EnginePairs(pairs, people, things, CATALOGUE).split()
    assert split.customer_ids == ("tk_a", "tk_b") and split.test_items.tolist() == [0, 0]
    for bad in (pairs.assign(customer_no=[1, 1, 3, 3]), pairs.assign(item_no=[1, 3, 1, 2])):
        with pytest.raises(DataValidationError, match="changed while the interactions were read"):
            EnginePairs(bad, people, things, CATALOGUE)
    with pytest.raises(DataValidationError, match="changed while"):
        EnginePairs(pairs, people.iloc[:1], things, CATALOGUE)

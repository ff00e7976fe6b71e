"""DuckDB scans give exactly the pre-noise aggregates the pandas path gives, on a partner's own files, with
opted-out and erased customers absent (tests/support/engine_data.py explains why exact equality is fair)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.engine_data import ERASED, OPTED_OUT, own_tables, write_csv_partner

from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
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


def _by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    """A scan's rows in customer order: an engine promises no row order without ORDER BY."""
    return frame.sort_values("customer_id").reset_index(drop=True)

def _opt_out_in_place(folder: Path, tables: dict[str, pd.DataFrame]) -> tuple[str, str, os.stat_result]:
    """A consenting customer's consent flipped to 0 in customers.csv in place: the same size, the modification time
    put back (only the change time moves). Returns who, the file's old text and its old stat (to put it back)."""
    path = folder / "customers.csv"
    text, stat = path.read_text(), path.stat()
    consenting = tables["customers"].set_index("customer_id")["consent"]
    who = next(c for c, v in consenting.items() if v == "1" and c not in ERASED)
    flipped = text.replace(f"\n{who},1,", f"\n{who},0,", 1)
    assert flipped != text and len(flipped) == len(text)
    path.write_text(flipped)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return who, text, stat


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


def test_mapped_own_exports(tmp_path):
    """A partner's own exports read through its mapping.toml (Chinese names, local time, ¥ amounts, e-mail column
    dropped by its policy), with erased customers: the same groups and counts as the pandas path, exactly."""
    from support.exports import write_cn_export

    from fedinsight.partner.policy_init import init_partner

    folder = tmp_path / "cn"
    write_cn_export(folder, customers=120)
    init_partner(folder)
    phones = pd.read_csv(folder / "会员信息.csv", encoding="gb18030", dtype=str)["会员手机号"].tolist()
    forget_customers(phones[:4], find_policy(folder))
    view = PartnerView(folder, "analytics")
    rules = FeatureRules(as_of="2026-01-01", window_days=180)
    expected = aggregates_from_features(customer_features(view.tables(), rules))
    got = aggregates_from_scan(view.scan(customer_scan(rules)), rules)
    counts = ["purchases", "f_window", "rfm", "lifecycle", "tier_now", "tier_prev"]
    pd.testing.assert_frame_equal(got[counts], expected[counts], check_dtype=False, check_exact=True)
    # ¥ amounts in cents: pandas adds floats row by row, the engine sums exactly, so the last bits may differ
    money = ["spend_now", "spend_prev"]
    np.testing.assert_allclose(got[money].to_numpy(), expected[money].to_numpy(), rtol=1e-12, atol=1e-9)
    assert _tokens(folder, phones[:4]).isdisjoint(got.index) and got["purchases"].sum() > 0


def test_a_mapped_folder_is_read_once_for_a_hello(tmp_path, monkeypatch):
    """A hello reads the schema, checks the types, counts and discovers through the engine; a mapped folder's
    mapping is pandas code, so each call used to re-read the whole folder: it is read once, until it changes."""
    from support.exports import write_cn_export

    import fedinsight.partner.view as view_module
    from fedinsight.partner.policy_init import init_partner

    folder = tmp_path / "cn"
    write_cn_export(folder, customers=60)
    init_partner(folder)
    reads: list[Path] = []
    original = view_module.load_partner_folder

    def counting(path, **kwargs):  # noqa: ANN001, ANN003, ANN202
        reads.append(Path(path))
        return original(path, **kwargs)

    monkeypatch.setattr(view_module, "load_partner_folder", counting)
    view = PartnerView(folder, "analytics")
    view.columns(), view.check_types(), view.count_customers()
    view.scan(customer_scan(FeatureRules(as_of="2026-01-01", window_days=180)))
    assert len(reads) == 1
    os.utime(folder / "会员信息.csv", ns=(1, 1))  # the export changed: the mapping's fingerprint changes
    PartnerView(folder, "analytics").count_customers()
    assert len(reads) == 2


def test_a_kept_scan_result_follows_erasures_and_new_files(tmp_path, monkeypatch):
    """Scan results are kept per process (a job asks the same scans at every message); an erasure, an opt-out that
    keeps the file's size and time, or a changed file, is seen by the next scan all the same."""
    import fedinsight.partner.view as view_module

    ran: list[int] = []
    original = view_module.run_scans

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        ran.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(view_module, "run_scans", counting)
    tables = own_tables(customers=40)
    folder = write_csv_partner(tmp_path / "shop", tables)
    rules = FeatureRules(as_of="2026-01-01", window_days=180)
    first = PartnerView(folder, "analytics").scan(customer_scan(rules))
    again = PartnerView(folder, "analytics").scan(customer_scan(rules))
    pd.testing.assert_frame_equal(first, again)  # the kept result itself, rows in the same order
    assert len(ran) == 1  # the second scan was the kept result
    # an opt-out written in place: same size, the modification time put back (only the change time moves)
    who, text, stat = _opt_out_in_place(folder, tables)
    path = folder / "customers.csv"
    opted = PartnerView(folder, "analytics").scan(customer_scan(rules))
    assert len(opted) == len(first) - 1 and _tokens(folder, [who]).isdisjoint(opted["customer_id"])
    path.write_text(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = PartnerView(folder, "analytics").scan(customer_scan(rules))  # run afresh: the change time moved
    again.drop(again.index, inplace=True)  # a caller changing its copy changes nothing kept
    # the kept result: the first scan's rows, in whatever order the engine returned them this time
    pd.testing.assert_frame_equal(_by_customer(first),
                                  _by_customer(PartnerView(folder, "analytics").scan(customer_scan(rules))))
    kept = sorted(set(tables["customers"]["customer_id"]) - set(OPTED_OUT) - set(ERASED))
    forget_customers([kept[0]], find_policy(folder))
    after = PartnerView(folder, "analytics").scan(customer_scan(rules))
    assert len(after) == len(first) - 1 and _tokens(folder, [kept[0]]).isdisjoint(after["customer_id"])
    fewer = tables["transactions"][tables["transactions"]["customer_id"] != kept[1]]
    fewer.to_csv(folder / "transactions.csv", index=False)
    os.utime(folder / "transactions.csv", ns=(2, 2))
    latest = PartnerView(folder, "analytics").scan(customer_scan(rules))
    assert int(latest["purchases"].sum()) < int(after["purchases"].sum())


def test_ids_and_labels_padded_with_any_whitespace_count_as_pandas_counts_them(tmp_path):
    """A tab or an ideographic space (U+3000) around a customer id, a channel or a stage is trimmed by the engine
    as Python's ``str.strip`` trims it (the pandas path and the tokenizer): the customer's purchases are counted."""
    tables = own_tables()
    tx, ev = tables["transactions"], tables["events"]
    tx.loc[tx["customer_id"].str.strip() == "0004", "customer_id"] = "0004\t"
    tx.loc[tx["customer_id"].str.strip() == "0006", "customer_id"] = "\u30000006\u3000"
    tx["channel"] = tx["channel"].where(tx.index % 3 != 0, tx["channel"] + "\u00a0")
    ev["stage"] = ev["stage"].where(ev.index % 4 != 0, "\t" + ev["stage"])
    folder = write_csv_partner(tmp_path / "shop", tables)
    view = PartnerView(folder, "analytics")
    rules = FeatureRules(as_of="2026-03-01", window_days=180)
    expected = aggregates_from_features(customer_features(view.tables(), rules))
    got = aggregates_from_scan(view.scan(customer_scan(rules)), rules)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)
    padded = _tokens(folder, ["0004", "0006"])
    assert padded <= set(got.index) and (got.loc[list(padded), "purchases"] > 0).all()


def test_the_pandas_view_reads_an_opt_out_written_in_place(tmp_path):
    """The per-process cache of a plain folder's protected tables follows its files' stamps: a consent flipped in
    place (same size, modification time put back) is read by the next view, as the engine's scans read it."""
    tables = own_tables(customers=40)
    folder = write_csv_partner(tmp_path / "shop", tables)
    before = PartnerView(folder, "analytics").tables().num_customers
    _opt_out_in_place(folder, tables)
    assert PartnerView(folder, "analytics").tables().num_customers == before - 1

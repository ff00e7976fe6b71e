"""The engine reads a directory of Parquet files and a SQL table (SQLite) as it reads CSV files: the same scan
gives the same result to the last bit; bad input is one typed error and leaves no spill folder behind."""

from __future__ import annotations

import shutil
import sqlite3

import pandas as pd
import pytest
from support.engine_data import ERASED, own_tables, write_csv_partner

from fedinsight.core.errors import DataValidationError, PiiDetectedError
from fedinsight.partner.engine import EngineSettings
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import STATE_DIR, find_policy
from fedinsight.partner.view import PartnerView
from fedinsight.tasks.insights.customer_features import FeatureRules
from fedinsight.tasks.insights.customer_scan import customer_scan

RULES = FeatureRules(as_of="2026-03-01", window_days=180)


@pytest.fixture(scope="module")
def csv_shop(tmp_path_factory):
    folder = write_csv_partner(tmp_path_factory.mktemp("csv") / "shop", own_tables())
    forget_customers(list(ERASED), find_policy(folder))
    return folder


@pytest.fixture(scope="module")
def expected(csv_shop):
    return PartnerView(csv_shop, "analytics").scan(customer_scan(RULES)).sort_values("customer_id", ignore_index=True)


def _same_partner(csv_shop, folder):
    """Another copy of the same partner: the same keys and erasure register (so the same tokens)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(csv_shop / STATE_DIR, folder / STATE_DIR)
    return folder


def test_parquet_directory(csv_shop, expected, tmp_path):
    folder = _same_partner(csv_shop, tmp_path / "lake")
    tables = own_tables()
    tx = tables["transactions"].assign(timestamp=lambda f: pd.to_datetime(f["timestamp"]))
    (folder / "transactions" / "year=all").mkdir(parents=True)
    for k, part in enumerate(range(0, len(tx), 250)):  # several files in nested folders, as a lake writes them
        tx.iloc[part:part + 250].to_parquet(folder / "transactions" / "year=all" / f"part-{k}.parquet", index=False)
    tables["customers"].to_csv(folder / "customers.csv", index=False)
    tables["events"].to_parquet(folder / "events.parquet", index=False)
    got = PartnerView(folder, "analytics").scan(customer_scan(RULES))
    pd.testing.assert_frame_equal(got.sort_values("customer_id", ignore_index=True), expected, check_exact=True)


def test_sqlite_table(csv_shop, expected, tmp_path):
    folder = _same_partner(csv_shop, tmp_path / "db-partner")
    db = tmp_path / "crm.db"
    tables = own_tables()
    with sqlite3.connect(db) as con:
        tables["customers"].to_sql("clients", con, index=False)
        tables["transactions"].to_sql("orders", con, index=False)
        tables["events"].to_sql("events", con, index=False)
    settings = EngineSettings(db_url=f"sqlite:///{db}", db_tables="customers=clients,transactions=orders")
    got = PartnerView(folder, "analytics", engine=settings).scan(customer_scan(RULES))
    pd.testing.assert_frame_equal(got.sort_values("customer_id", ignore_index=True), expected, check_exact=True)


def test_undeclared_personal_data_stops_the_scan(tmp_path):
    tables = own_tables(customers=20)
    tables["transactions"]["buyer_email"] = [f"user{i}@example.com" for i in range(len(tables["transactions"]))]
    folder = write_csv_partner(tmp_path / "leaky", tables)
    with pytest.raises(PiiDetectedError, match="buyer_email"):
        PartnerView(folder, "analytics").scan(customer_scan(RULES))
    assert not list((folder / STATE_DIR / "engine-tmp").iterdir())  # the spill folder went with the engine


def test_a_value_of_the_wrong_type_is_a_data_error(tmp_path):
    tables = own_tables(customers=20)
    tables["transactions"]["amount"] = tables["transactions"]["amount"].astype(object)
    tables["transactions"].loc[5, "amount"] = "twelve"
    folder = write_csv_partner(tmp_path / "typo", tables)
    with pytest.raises(DataValidationError, match="canonical type") as caught:
        PartnerView(folder, "analytics").scan(customer_scan(RULES))
    assert "twelve" in str(caught.value)  # the partner sees the value it must fix ...
    assert "twelve" not in caught.value.public_message  # ... the coordinator's error reply never carries it


def test_hello_finds_a_value_of_the_wrong_type_before_any_scan(tmp_path):
    """The engine reads lazily, so a bad value would surface only in the scan that reads it, mid-job and after the
    charge; the hello's check (:meth:`PartnerSide.check_data`) finds it first, in every typed column."""
    tables = own_tables(customers=20)
    tables["transactions"]["amount"] = tables["transactions"]["amount"].astype(object)
    tables["transactions"].loc[5, "amount"] = "twelve"
    tables["transactions"]["timestamp"] = tables["transactions"]["timestamp"].astype(str)
    tables["transactions"].loc[7, "timestamp"] = "555-0100"  # e.g. a phone number pasted into a date
    folder = write_csv_partner(tmp_path / "typo", tables)
    view = PartnerView(folder, "analytics")
    assert view.count_customers() > 0  # the count alone reads only the ids: it would not notice
    with pytest.raises(DataValidationError) as caught:
        view.check_types()
    found = {(p.column, p.message.split(";")[0]) for p in caught.value.problems}
    assert found == {("amount", "some values are not a number"), ("timestamp", "some values are not a date and time")}
    assert "twelve" not in caught.value.public_message and "555-0100" not in caught.value.public_message
    PartnerView(write_csv_partner(tmp_path / "clean", own_tables(customers=20)), "analytics").check_types()


@pytest.mark.slow
def test_postgresql_table(csv_shop, expected, tmp_path):
    """A PostgreSQL table with typed columns (timestamps, doubles) is streamed in batches and typed the same way."""
    from sqlalchemy import create_engine
    from support.postgres import postgres_server

    folder = _same_partner(csv_shop, tmp_path / "pg-partner")
    tables = own_tables()
    with postgres_server() as url:
        db = create_engine(url)
        try:
            tables["customers"].to_sql("clients", db, index=False)
            tables["transactions"].assign(timestamp=lambda f: pd.to_datetime(f["timestamp"])).to_sql(
                "transactions", db, index=False, chunksize=200)
            tables["events"].to_sql("events", db, index=False)
        finally:
            db.dispose()
        settings = EngineSettings(db_url=url, db_tables="customers=clients")
        got = PartnerView(folder, "analytics", engine=settings).scan(customer_scan(RULES))
    pd.testing.assert_frame_equal(got.sort_values("customer_id", ignore_index=True), expected, check_exact=True)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_repeated_customer_id_is_one_data_error_naming_file_and_id(tmp_path, fmt):
    """The joins assume one row per customer: a repeat (here " 0009", equal to "0009" once trimmed, as the tokenizer
    trims) is refused before any scan runs, in the pandas validation's words, naming the file and the id."""
    tables = own_tables(customers=20)
    customers = tables["customers"]
    repeat = customers.iloc[[8]].assign(customer_id=" 0009")
    tables["customers"] = pd.concat([customers, repeat], ignore_index=True)
    folder = write_csv_partner(tmp_path / "twice", tables)
    if fmt == "parquet":
        for name, frame in tables.items():
            (folder / f"{name}.csv").unlink()
            frame.to_parquet(folder / f"{name}.parquet")
    with pytest.raises(DataValidationError) as caught:
        PartnerView(folder, "analytics").scan(customer_scan(RULES))
    text = str(caught.value)
    assert f"customers.{fmt}" in text and "duplicate key (customer_id must be unique) in 1 row(s)" in text
    assert "'0009'" in text
    assert "0009" not in caught.value.problems[0].public()  # the id stays on the partner: its error reply omits it
    assert not list((folder / STATE_DIR / "engine-tmp").iterdir())


def test_a_passed_pii_check_is_kept_only_while_the_files_are_unchanged(tmp_path, monkeypatch):
    """The PII check's decisions are kept per process once a sample passed (relations._check_pii): the same files
    are not sampled again, but a column of personal data written into a file afterwards still stops the scan."""
    from fedinsight.partner.engine import relations
    from fedinsight.partner.view import CUSTOMER_COUNT

    tables = own_tables(customers=20)
    folder = write_csv_partner(tmp_path / "shop", tables)
    checks: list[int] = []
    plan = relations.plan_columns
    monkeypatch.setattr(relations, "plan_columns", lambda *a, **k: checks.append(1) or plan(*a, **k))
    PartnerView(folder, "analytics").scan(customer_scan(RULES))
    PartnerView(folder, "analytics").scan(CUSTOMER_COUNT)  # another scan of the same files: no second sample
    assert len(checks) == 1
    tables["transactions"]["buyer_email"] = [f"user{i}@example.com" for i in range(len(tables["transactions"]))]
    tables["transactions"].to_csv(folder / "transactions.csv", index=False)  # in place: same path
    with pytest.raises(PiiDetectedError, match="buyer_email"):
        PartnerView(folder, "analytics").scan(CUSTOMER_COUNT)
    assert len(checks) == 2

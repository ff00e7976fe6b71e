"""Spark (local[1]) and DuckDB give the same pre-noise aggregates on the same partner files, exactly: the scans are
written once in DuckDB's dialect and transpiled by sqlglot; money is summed as exact decimals on both."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from unittest.mock import patch

import pandas as pd
import pytest
from support.engine_data import ERASED, OPTED_OUT, own_tables, write_csv_partner

from fedinsight.partner.engine import EngineSettings
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.view import PartnerView
from fedinsight.privacy.tokenize import Tokenizer
from fedinsight.tasks.insights.customer_features import FeatureRules
from fedinsight.tasks.insights.customer_scan import customer_scan
from fedinsight.tasks.propensity.customer_scan import customer_scan as propensity_scan
from fedinsight.tasks.propensity.features import LabelWindow

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17 (`make test` installs it)")]
SPARK = EngineSettings(engine="spark", spark_master="local[1]")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    pytest.importorskip("pyspark")
    folder = write_csv_partner(tmp_path_factory.mktemp("spark") / "shop", own_tables())
    forget_customers(list(ERASED), find_policy(folder))
    return folder


@contextmanager
def spark_runs():
    """Fails unless Spark answers a query inside the block (a per-process memo of scan results once answered the
    DuckDB result to the Spark view, so every equality here compared DuckDB with itself)."""
    from fedinsight.partner.engine.spark_backend import SparkEngine

    fetched: list[str] = []
    original = SparkEngine.fetch

    def counting(self, sql, drop=()):  # noqa: ANN001, ANN202
        fetched.append(sql)
        return original(self, sql, drop)

    with patch.object(SparkEngine, "fetch", counting):
        yield
    assert fetched, "Spark ran nothing: the result came from elsewhere"


def _on_spark(folder, purpose, scan):
    """``scan`` run by Spark, checked to have really run there."""
    with spark_runs():
        return PartnerView(folder, purpose, engine=SPARK).scan(scan)


def _both(folder, purpose, scan):
    duck = PartnerView(folder, purpose).scan(scan)
    spark = _on_spark(folder, purpose, scan)
    key = [c for c in duck.columns if c == "customer_id"]
    return (duck.sort_values(key, ignore_index=True)[sorted(duck.columns)],
            spark.sort_values(key, ignore_index=True)[sorted(spark.columns)])


def test_insights_aggregates_duckdb_equals_spark(shop):
    duck, spark = _both(shop, "analytics", customer_scan(FeatureRules(as_of="2026-03-01", window_days=180)))
    pd.testing.assert_frame_equal(spark, duck, check_dtype=False, check_exact=True)
    assert len(duck) > 40 and duck["spend_now"].sum() > 0
    absent = set(Tokenizer(find_policy(shop).tokenization_ring()).tokens([*OPTED_OUT, *ERASED]))
    assert absent.isdisjoint(spark["customer_id"])


def test_propensity_features_duckdb_equals_spark_on_a_parquet_directory(shop, tmp_path):
    """Spark reads the transactions as a directory of Parquet files, DuckDB the same rows from CSV."""
    folder = tmp_path / "lake"
    shutil.copytree(shop / ".fedinsight", folder / ".fedinsight")  # the same keys and erasure register
    tables = own_tables()
    tx = tables["transactions"].assign(timestamp=lambda f: pd.to_datetime(f["timestamp"]))
    (folder / "transactions").mkdir()
    for k, part in enumerate(range(0, len(tx), 300)):
        tx.iloc[part:part + 300].to_parquet(folder / "transactions" / f"part-{k}.parquet", index=False)
    tables["customers"].to_csv(folder / "customers.csv", index=False)
    scan = propensity_scan(LabelWindow(pd.Timestamp("2024-01-01"), pd.Timestamp("2025-01-01"),
                                       pd.Timestamp("2025-07-01")))
    duck = PartnerView(shop, "training").scan(scan).sort_values("customer_id", ignore_index=True)
    spark = _on_spark(folder, "training", scan).sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(spark[list(duck.columns)], duck, check_dtype=False, check_exact=True)
    assert len(duck) > 40 and duck["monetary_total"].sum() > 0


def test_uplift_scans_duckdb_equal_spark(tmp_path):
    """Uplift's audience (a window function, joins on the exposure time, microsecond gaps) and the offer list's
    features: the same rows from both engines."""
    from fedinsight.tasks.uplift.audience_scan import audience_scan, features_scan

    pytest.importorskip("pyspark")
    tables = own_tables()
    tables["events"]["arm"] = [("A", "B", "C")[k % 3] for k in range(len(tables["events"]))]
    folder = write_csv_partner(tmp_path / "shop", tables)
    forget_customers(list(ERASED), find_policy(folder))
    for scan in (audience_scan("spring sale", ("B", "A", "C")),
                 features_scan(pd.Timestamp("2025-06-01"), "customers")):
        duck, spark = _both(folder, "training", scan)
        pd.testing.assert_frame_equal(spark, duck, check_dtype=False, check_exact=True)
        assert len(duck) >= 15 and duck["orders"].sum() > 0


def test_recommender_pairs_duckdb_equal_spark(tmp_path):
    """The recommender's ranked pairs (a window over each customer's items, same-instant ties by an MD5 of day and
    item): the same rows from both engines, so the same split."""
    from support.engine_data import own_interactions

    from fedinsight.tasks.recommend.interaction_scan import PAIRS, PEOPLE, THINGS

    pytest.importorskip("pyspark")
    tables = own_tables()
    folder = write_csv_partner(tmp_path / "shop", {**tables, "interactions": own_interactions(tables)})
    forget_customers(list(ERASED), find_policy(folder))
    duck = PartnerView(folder, "recommendation").scans([PAIRS, PEOPLE, THINGS])
    with spark_runs():
        spark = PartnerView(folder, "recommendation", engine=SPARK).scans([PAIRS, PEOPLE, THINGS])
    for a, b, key in zip(duck, spark, (["customer_no", "recency"], ["customer_no"], ["item_no"]), strict=True):
        a, b = (f.sort_values(key, ignore_index=True)[sorted(f.columns)] for f in (a, b))
        pd.testing.assert_frame_equal(b, a, check_dtype=False, check_exact=True)
    pairs = duck[0]
    assert len(pairs) > 400 and pairs["recency"].max() >= 9 and (pairs["n"] > 1).any()


def test_contacts_duckdb_equal_spark(tmp_path):
    """A target list's contact read (the PII sample's choice, then each customer's latest non-empty value with ties
    at one time broken by the largest): the same from both engines, on CSV and on a Parquet directory."""
    from support.engine_data import TIED, contact_tables

    from fedinsight.partner.contacts import resolve_contacts
    from fedinsight.partner.policy_init import init_partner

    pytest.importorskip("pyspark")
    tables = contact_tables()
    folder = write_csv_partner(tmp_path / "shop", tables)
    init_partner(folder)
    lake = tmp_path / "lake"
    shutil.copytree(folder / ".fedinsight", lake / ".fedinsight")
    shutil.copy(folder / "protection.toml", lake / "protection.toml")
    tx = tables.pop("transactions").assign(timestamp=lambda f: pd.to_datetime(f["timestamp"]))
    (lake / "transactions").mkdir()
    for k, start in enumerate(range(0, len(tx), 400)):
        tx.iloc[start:start + 400].to_parquet(lake / "transactions" / f"part-{k}.parquet", index=False)
    write_csv_partner(lake, tables)
    duck = resolve_contacts(PartnerView(folder, "training"))
    tied = Tokenizer(find_policy(folder).tokenization_ring()).token(TIED)
    assert duck.source == "transactions.e_mail" and duck.by_token[tied] == f"b.{TIED}@shop.example"
    for where in (folder, lake):
        with spark_runs():
            spark = resolve_contacts(PartnerView(where, "training", engine=SPARK))
        assert (spark.source, spark.by_token) == (duck.source, duck.by_token)
    phones = resolve_contacts(PartnerView(folder, "training"), "phone")
    with spark_runs():
        assert resolve_contacts(PartnerView(lake, "training", engine=SPARK), "phone").by_token == phones.by_token
    assert len(phones.by_token) > 90

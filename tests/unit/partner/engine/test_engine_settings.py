"""Bad engine settings: one ConfigError naming the engine and the setting, when the partner's view opens (in a
job's hello, before anything is charged), and exit code 2 at the command line."""

from __future__ import annotations

import socket

import pytest
from flwr.app import Context, RecordDict
from support.engine_data import own_tables, write_csv_partner

from fedinsight.core.errors import ConfigError
from fedinsight.partner.engine import EngineSettings
from fedinsight.partner.engine import settings as engine_settings
from fedinsight.partner.side import PartnerSide
from fedinsight.partner.view import PartnerView


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return write_csv_partner(tmp_path_factory.mktemp("settings") / "shop", own_tables(customers=20))


def _side(folder, **node):
    context = Context(run_id=0, node_id=0, node_config={"data-path": str(folder), **node}, state=RecordDict(),
                      run_config={})
    return PartnerSide("analytics", context, {})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once the socket is closed


def test_unknown_engine_is_refused_when_the_partner_opens(shop):
    with pytest.raises(ConfigError, match="engine='sparkle'") as err:
        _side(shop, engine="sparkle")
    assert err.value.exit_code == 2


def test_unreachable_spark_master_names_the_setting(shop):
    with pytest.raises(ConfigError, match="spark-master=.*nobody answers"):
        _side(shop, engine="spark", **{"spark-master": f"spark://127.0.0.1:{_closed_port()}"})


def test_spark_master_that_is_no_url(shop):
    with pytest.raises(ConfigError, match="spark-master='http://x' is not a Spark master URL"):
        _side(shop, engine="spark", **{"spark-master": "http://x"})


@pytest.mark.parametrize("url, message", [("not a url", "not a database URL"),
                                          (f"postgresql+psycopg://nobody@127.0.0.1:{_closed_port()}/crm",
                                           "db-url: the database cannot be reached")])
def test_wrong_database_url_names_db_url(shop, url, message):
    with pytest.raises(ConfigError, match=message):
        _side(shop, **{"db-url": url})


def test_engine_not_installed(shop, monkeypatch):
    real = engine_settings.importlib.util.find_spec
    monkeypatch.setattr(engine_settings.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyspark" else real(name, *a))
    engine_settings._check.cache_clear()
    with pytest.raises(ConfigError, match="engine=spark: the pyspark package is not installed"):
        PartnerView(shop, "analytics", engine=EngineSettings(engine="spark", spark_master="local[1]"))
    engine_settings._check.cache_clear()


def test_db_tables_naming_a_missing_table(shop, tmp_path):
    import sqlite3

    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE orders (customer_id TEXT)")
    view = PartnerView(shop, "analytics", engine=EngineSettings(db_url=f"sqlite:///{db}",
                                                                db_tables="transactions=sales"))
    with pytest.raises(ConfigError, match="db-tables: the database at db-url has no table sales"):
        view.sources()



def test_partner_toml_carries_the_engine_and_ready_refuses_a_bad_one(shop, tmp_path):
    """partner.toml's engine keys reach the SuperNode's node config; a bad one stops `partner ready/start`."""
    from fedinsight.partner.config import load_partner_config
    from fedinsight.partner.process import node_config, validate_partner_data

    toml = tmp_path / "partner.toml"
    base = (f'[partner]\nid = "retail"\ndata-path = "{shop}"\n{{engine}}\n[superlink]\naddress = "127.0.0.1:9"\n'
            'ca-cert = "ca.crt"\nprivate-key = "retail.key"\n')
    toml.write_text(base.format(engine='engine = "duckdb"\nengine-memory = "1GB"'))
    config = load_partner_config(toml, check_files=False)
    assert 'engine="duckdb"' in node_config(config) and 'engine-memory="1GB"' in node_config(config)
    assert validate_partner_data(config)["transactions"] > 0
    toml.write_text(base.format(engine=f'engine = "spark"\nspark-master = "spark://127.0.0.1:{_closed_port()}"'))
    with pytest.raises(ConfigError, match="spark-master"):
        validate_partner_data(load_partner_config(toml, check_files=False))


def test_a_scan_may_read_only_the_tables_it_declares() -> None:
    """The engine holds each table's raw form beside the protected one (``raw_transactions``: opted-out and erased
    customers included); a scan naming anything it does not declare is refused when it is defined."""
    from fedinsight.federation.scan import Scan

    Scan("ok", "WITH t AS (SELECT customer_id FROM transactions) SELECT * FROM t", ("transactions",))
    with pytest.raises(ValueError, match="does not declare: raw_transactions"):
        Scan("sneaky", "SELECT customer_id FROM raw_transactions", ("transactions",))
    with pytest.raises(ValueError, match="does not declare: customers"):
        Scan("join", "SELECT * FROM transactions JOIN customers USING (customer_id)", ("transactions",))

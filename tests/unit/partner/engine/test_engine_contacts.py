"""A target list's contact column is read by the partner's engine, not from whole tables: the column it chooses and
each customer's contact equal the pandas path's (the one it replaced, kept here as the reference with its two
changed rules) on a CSV folder, a Parquet-directory folder and a mapped export; ``--contact`` finds a column by its
canonical name or the partner's own header; ids can be the contacts; a bad name is one ConfigError listing the
columns; and a whole list is built with ``PartnerSide.data`` (and, on a plain folder, every whole-table read)
failing, opted-out and erased customers on it nowhere.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from support.contacts_pandas import pandas_contacts
from support.engine_data import BLANK, ERASED, OPTED_OUT, TIED, contact_tables, write_csv_partner
from support.exports import write_us_export

import fedinsight.data.federation as federation
from fedinsight.core.errors import ConfigError
from fedinsight.models.propensity import ModelBundle, SharedScaler, TargetScaler, build_model, get_weights
from fedinsight.partner.contacts import resolve_contacts
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.policy_init import init_partner
from fedinsight.partner.side import open_partner
from fedinsight.partner.targets import build_targets
from fedinsight.partner.view import PartnerView
from fedinsight.privacy.pii_values import CHECKS
from fedinsight.privacy.tokenize import Tokenizer
from fedinsight.tasks.propensity.features import FEATURES, FeatureCaps, LabelWindow

EXCLUDED = {c.strip() for c in (*OPTED_OUT, *ERASED)}


def _init(folder: Path) -> Path:
    init_partner(folder)
    forget_customers(list(ERASED), find_policy(folder), note="test")
    return folder


@pytest.fixture(scope="module")
def csv_shop(tmp_path_factory) -> Path:
    return _init(write_csv_partner(tmp_path_factory.mktemp("contacts") / "shop", contact_tables()))


@pytest.fixture(scope="module")
def parquet_shop(csv_shop, tmp_path_factory) -> Path:
    """The CSV shop's rows with the transactions as a directory of Parquet files (typed timestamps), under its keys
    and erasure register. The pandas reader (the reference) cannot read such a folder: its reference is the CSV
    shop's, the same customers under the same keys."""
    tables = contact_tables()
    folder = tmp_path_factory.mktemp("contacts") / "lake"
    shutil.copytree(csv_shop / ".fedinsight", folder / ".fedinsight")
    shutil.copy(csv_shop / "protection.toml", folder / "protection.toml")
    tx = tables.pop("transactions").assign(timestamp=lambda f: pd.to_datetime(f["timestamp"]))
    (folder / "transactions").mkdir()
    for k, start in enumerate(range(0, len(tx), 400)):
        tx.iloc[start:start + 400].to_parquet(folder / "transactions" / f"part-{k}.parquet", index=False)
    return write_csv_partner(folder, tables)


MAPPING = """\
[tables.customers]
files = ["kunden.csv"]

[tables.customers.columns]
customer_id = "Kunde"
consent = "Einwilligung"

[tables.transactions]
files = ["bestellungen.csv"]

[tables.transactions.columns]
transaction_id = "Bestellung"
customer_id = "Kunde"
timestamp = "Zeit"

[tables.events]
files = ["aktionen.csv"]

[tables.events.columns]
customer_id = "Kunde"
"""


@pytest.fixture(scope="module")
def mapped_shop(tmp_path_factory) -> Path:
    """The same data under the partner's own headers, read through a ``mapping.toml``."""
    tables = contact_tables()
    folder = tmp_path_factory.mktemp("contacts") / "mapped"
    folder.mkdir()
    own = {"customer_id": "Kunde", "consent": "Einwilligung", "transaction_id": "Bestellung", "timestamp": "Zeit"}
    for name, file in (("customers", "kunden.csv"), ("transactions", "bestellungen.csv"), ("events", "aktionen.csv")):
        frame = tables[name]
        frame.rename(columns={c: own[c] for c in frame.columns if c in own and (name != "events" or c == "customer_id")}
                     ).to_csv(folder / file, index=False)
    (folder / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    return _init(folder)


@pytest.fixture(scope="module")
def us_shop(tmp_path_factory) -> Path:
    """A shop keyed by e-mail (``Email``), with a ``Phone`` column."""
    export = write_us_export(tmp_path_factory.mktemp("contacts") / "us shop", customers=150)
    init_partner(export.folder)
    return export.folder


def _token(folder: Path, customer: str) -> str:
    return Tokenizer(find_policy(folder).tokenization_ring()).token(customer)


# --- the tests ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shop", ["csv_shop", "parquet_shop", "mapped_shop"])
def test_contacts_equal_the_pandas_path(request, shop):
    folder = request.getfixturevalue(shop)
    got = resolve_contacts(PartnerView(folder, "training"))
    reference = request.getfixturevalue("csv_shop") if shop == "parquet_shop" else folder
    assert (got.source, got.by_token) == pandas_contacts(reference)
    assert got.source == "transactions.e_mail"  # an e-mail before the customers' phones
    assert got.by_token[_token(folder, TIED)] == f"b.{TIED}@shop.example"  # the tie: the largest, not the last row
    blank = got.by_token[_token(folder, BLANK)]
    assert blank.startswith(f"{BLANK}.") and blank.strip() == blank  # the row before the blank one
    assert len(got.by_token) > 100


@pytest.mark.parametrize(("shop", "name", "source"), [
    ("csv_shop", "phone", "customers.phone"),
    ("mapped_shop", "Kunde", "customer_id (Kunde)"),  # the mapped id by the partner's own header
    ("mapped_shop", "customer_id", "customer_id (Kunde)"),
    ("mapped_shop", "phone", "customers.phone"),
    ("us_shop", "Email", "customer_id (Email)"),
    ("us_shop", "Phone", "customers.Phone"),
])
def test_contact_named_by_its_canonical_name_or_own_header(request, shop, name, source):
    folder = request.getfixturevalue(shop)
    got = resolve_contacts(PartnerView(folder, "training"), name)
    assert (got.source, got.by_token) == pandas_contacts(folder, name)
    assert got.source == source and len(got.by_token) > 100


def test_ids_are_the_contacts_when_they_are_e_mails(us_shop):
    got = resolve_contacts(PartnerView(us_shop, "training"))
    assert (got.source, got.by_token) == pandas_contacts(us_shop)
    assert got.source == "customer_id (Email)"
    assert all(CHECKS["email"](v) is not None and _token(us_shop, v) == t for t, v in got.by_token.items())


@pytest.mark.parametrize("shop", ["csv_shop", "mapped_shop", "us_shop"])
def test_a_bad_contact_name_is_one_config_error_listing_the_columns(request, shop):
    folder = request.getfixturevalue(shop)
    with pytest.raises(ConfigError) as engine:
        resolve_contacts(PartnerView(folder, "training"), "Fax")
    with pytest.raises(ConfigError) as pandas:
        pandas_contacts(folder, "Fax")
    assert str(engine.value) == str(pandas.value)
    assert "--contact 'Fax'" in str(engine.value) and "its columns: " in str(engine.value)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ModelBundle:
    path = tmp_path_factory.mktemp("model") / "model.pt"
    n = len(FEATURES)
    window = LabelWindow(pd.Timestamp("2024-07-01"), pd.Timestamp("2025-07-01"), pd.Timestamp("2025-12-31"))
    ModelBundle(kind="mlp", features=FEATURES, weights=get_weights(build_model(n, "mlp", 3)),
                scaler=SharedScaler((0.0,) * n, (1.0,) * n), target=TargetScaler(0.35, FeatureCaps().log_unit),
                tier_thresholds=(5.0, 50.0), config={**window.to_config(), **FeatureCaps().to_config()}).save(path)
    return ModelBundle.load(path)


@pytest.fixture(scope="module")
def references(csv_shop, parquet_shop, mapped_shop):
    """The pandas path's contacts, made before whole-table reads are refused (module fixtures are set up first)."""
    return {shop: pandas_contacts(folder) for shop, folder in
            (("csv_shop", csv_shop), ("parquet_shop", csv_shop), ("mapped_shop", mapped_shop))}


@pytest.mark.parametrize("shop", ["csv_shop", "parquet_shop", "mapped_shop"])
def test_a_whole_list_with_contacts_is_built_without_loading_a_table(request, bundle, shop, references,
                                                                     no_whole_tables, monkeypatch):
    folder = request.getfixturevalue(shop)
    if shop != "mapped_shop":  # a mapped folder's transforms are pandas code: its mapped frames are read once
        def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise AssertionError("a whole-table read of a plain folder")
        monkeypatch.setattr(federation, "read_partner", refuse)
    built = build_targets(bundle, folder, purpose="marketing", top="100%")
    source, expected = references[shop]
    assert built.contact_source == source == "transactions.e_mail"
    frame = built.frame
    listed = frame["customer_id"].str.strip()
    assert len(frame) > 10 and not set(listed) & EXCLUDED
    want = [expected.get(_token(folder, c)) for c in listed]
    assert frame["contact"].tolist() == want and all(want)
    # only the listed customers' contacts are kept (the engine reads every customer's; the rest are dropped here)
    kept = resolve_contacts(open_partner(folder, "training").view, None, [_token(folder, c) for c in listed])
    assert set(kept.by_token) == {_token(folder, c) for c in listed}
    assert not set(kept.by_token) & {_token(folder, c) for c in EXCLUDED}

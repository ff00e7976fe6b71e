"""PII detection: identifiers are found by column name and by values; messages never carry values."""

from __future__ import annotations

import pandas as pd
import pytest

from fedinsight.core.errors import PiiDetectedError
from fedinsight.data.schema import SCHEMA_COLUMNS
from fedinsight.partner.protection import ProtectionPolicy, plan_columns
from fedinsight.privacy.pii import kind_from_column_name, kind_from_values, scan_table, scan_tables

VALUES = {
    "email": ["ann.lee@example.com", "BOB_99@mail.co.uk", "x.y+tag@sub.domain.org", "zed@corp.io"],
    "phone": ["+86 138 0013 8000", "(555) 010-0199", "13800138000", "+44 20 7946 0958", "030-1234567"],
    "national_id": ["123-45-6789", "11010519491231002X", "AB 12 34 56 C", "987-65-4321"],
    "ip": ["192.0.2.1", "10.1.2.3", "2001:db8::1", "172.16.254.1"],
    "address": ["12 Main Street", "221B Baker St", "1600 Pennsylvania Avenue NW", "Hauptstrasse 5"],
    "name": ["Ann Lee", "Robert De Niro", "Mary-Jane Watson", "Li Wei", "O'Neil Smith"],
}


@pytest.mark.parametrize("kind", list(VALUES))
def test_each_kind_is_found_by_values_under_a_neutral_column_name(kind):
    frame = pd.DataFrame({"field_7": VALUES[kind] * 3})
    findings = scan_table("customers", frame, schema_columns=SCHEMA_COLUMNS["customers"])
    assert [(f.column, f.kind, f.by) for f in findings] == [("field_7", kind, "values")]


@pytest.mark.parametrize(
    ("column", "kind"),
    [("mobileNo", "phone"), ("e_mail", "email"), ("home_address", "address"), ("national_id", "national_id"),
     ("first_name", "name"), ("client_ip", "ip"), ("passport_number", "national_id"), ("surname", "name")],
)
def test_column_names_that_announce_identifiers(column, kind):
    assert kind_from_column_name(column) == kind


@pytest.mark.parametrize("column", ["item_name", "campaign_name", "zip_code", "region", "amount", "skip", "tip"])
def test_ordinary_column_names_are_not_identifiers(column):
    assert kind_from_column_name(column) is None


@pytest.mark.parametrize(
    "values",
    [
        ["2024-01-01", "2023-12-31", "2022-06-15"],  # dates as text are not phone numbers
        ["1234.5678", "99.5", "100000.25"],  # decimals
        ["north", "south", "east", "west"],  # lowercase categories
        ["New York", "Los Angeles"],  # one or two title-case values are not a column of names
        ["C00000001", "C00000002", "C00000003"],  # the synthetic generator's customer ids
        ["true", "false", "true"],
    ],
)
def test_everyday_values_are_not_flagged(values):
    assert kind_from_values(pd.Series(values * 5)) is None


def test_boolean_flag_named_like_an_identifier_is_not_flagged():
    frame = pd.DataFrame({"email_opt_in": ["true", "false", "true"], "sms_consent": [True, False, True]})
    assert scan_table("customers", frame, schema_columns=SCHEMA_COLUMNS["customers"]) == []


def test_item_titles_are_not_names_but_customer_columns_are():
    titles = pd.DataFrame({"item_id": ["1", "2", "3", "4"], "title": ["Olive Oil", "Yoga Mat", "Face Cream", "Tea"]})
    assert scan_table("items", titles, schema_columns=SCHEMA_COLUMNS["items"]) == []
    assert [f.kind for f in scan_table("customers", titles.rename(columns={"title": "x"}))] == ["name"]


def test_builtin_datasets_have_no_direct_identifiers(cdnow, movielens):
    inter, users, items = movielens
    assert scan_tables({"transactions": cdnow, "interactions": inter, "customers": users, "items": items},
                       schema=SCHEMA_COLUMNS) == []


def test_sampling_keeps_the_scan_cheap_and_still_finds_a_mixed_column():
    phones = [f"+1 555 {i:03d} {i % 10_000:04d}" for i in range(50_000)]
    noise = [f"note {i}" for i in range(50_000)]
    finding = kind_from_values(pd.Series(phones + noise))
    assert finding is not None and finding[0] == "phone" and 0.4 < finding[1] < 0.6


def test_undeclared_pii_stops_the_load_naming_column_and_pattern_but_never_a_value():
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "contact": VALUES["phone"][:3],
                          "who": VALUES["name"][:3], "age": [30, 40, 50]})
    with pytest.raises(PiiDetectedError) as info:
        plan_columns({"customers": frame}, ProtectionPolicy())
    message = str(info.value)
    assert "customers.contact" in message and "customers.who" in message
    assert "+1 555-010-0199" in message and "Given Family" in message  # the example patterns
    for value in [*VALUES["phone"], *VALUES["name"]]:
        assert value not in message
    assert "customers.age" not in message


def test_declared_columns_pass_and_pii_in_a_schema_column_is_caught():
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "region": VALUES["email"][:3], "contact": ["x", "y", "z"]})
    with pytest.raises(PiiDetectedError, match="customers.region looks like an e-mail"):
        plan_columns({"customers": frame}, ProtectionPolicy())
    decisions, _ = plan_columns({"customers": frame}, ProtectionPolicy(columns={"customers.region": "drop"}))
    assert {(d.column, d.action, d.reason) for d in decisions} == {
        ("customer_id", "tokenize", "always"), ("region", "drop", "declared"), ("contact", "keep", "undeclared")}


def test_scan_and_init_cli_name_columns_never_values(tmp_path, capsys):
    from fedinsight.cli import main

    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "customers.csv").write_text(
        "customer_id,consent,mobile,notes\n"
        + "".join(f"c{i},true,+86 138 0013 {8000 + i},likes tea\n" for i in range(30)))
    capsys.readouterr()
    assert main(["data", "scan", str(folder), "--json"]) == 2
    captured = capsys.readouterr()
    assert "customers.mobile" in captured.out and "UNDECLARED" in captured.out
    assert "0013" not in captured.out + captured.err and "c1" not in captured.err
    assert main(["partner", "init", "--data", str(folder)]) == 0
    assert '"customers.mobile" = "drop"' in (folder / "protection.toml").read_text()
    assert main(["partner", "init", "--data", str(folder)]) == 2  # never silently replaced
    assert main(["data", "scan", str(folder)]) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[columns]\ncustomer_id = "keep"\n', "always tokenized"),
        ('[columns]\n"customers.phone" = "hide"\n', "drop, tokenize, keep"),
        ('[colums]\n', "unknown section"),
        ('[keys]\ntokenization-file = "a"\nencryption-file = "b"\nencryption-env = "X"\n', "not both"),
        ('[partner]\nstate-dir = "s"\n', "must name tokenization-file"),
        ('[consent]\nmissing = "maybe"\n', "deny, allow"),
        ("not = [valid", "not valid TOML"),
    ],
)
def test_policy_mistakes_are_refused_with_what_to_fix(tmp_path, text, message):
    from fedinsight.core.errors import ProtectionPolicyError
    from fedinsight.partner.protection import load_policy

    keys = '[keys]\ntokenization-file = "t.key"\nencryption-file = "e.key"\n'
    path = tmp_path / "protection.toml"
    path.write_text(text if "[keys]" in text or "must name" in message or "TOML" in message else text + keys)
    with pytest.raises(ProtectionPolicyError, match=message):
        load_policy(path)

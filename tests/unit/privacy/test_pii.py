"""PII detection: identifiers are found by column name and by values; messages never carry values."""

from __future__ import annotations

import pandas as pd
import pytest

from fedinsight.core.errors import PiiDetectedError
from fedinsight.data.schema import SCHEMA_COLUMNS
from fedinsight.partner.policy import ProtectionPolicy
from fedinsight.partner.protection import plan_columns
from fedinsight.privacy.pii import (
    kind_from_column_name,
    kind_from_values,
    pattern_from_values,
    scan_table,
    scan_tables,
)

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
    assert "CN mobile number (1[3-9] + 9 digits" in message and "personal name (2-4 capitalised words)" in message
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
    from fedinsight.partner.policy import load_policy

    keys = '[keys]\ntokenization-file = "t.key"\nencryption-file = "e.key"\n'
    path = tmp_path / "protection.toml"
    path.write_text(text if "[keys]" in text or "must name" in message or "TOML" in message else text + keys)
    with pytest.raises(ProtectionPolicyError, match=message):
        load_policy(path)


# --- customer ids, product names, country-aware phone numbers, pattern classes ---------------------------

CN_MOBILES = ["13800138000", "+86 139 4000 7000", "0086 150-1234-5678", "18612345678", "+86-177-0000-1111"]


@pytest.mark.parametrize("column", ["Customer ID", "customer id", "customerId", "会员ID", "客户编号", "member id",
                                    "Member No", "client_number", "loyalty_card_number", "custno", "会员号"])
def test_columns_named_like_a_customer_id_are_identifiers_not_phone_numbers(column):
    assert kind_from_column_name(column) == "customer_id"
    frame = pd.DataFrame({column: CN_MOBILES * 4})  # Chinese retailers often use the mobile number as member id
    findings = scan_table("transactions", frame, schema_columns=SCHEMA_COLUMNS["transactions"])
    assert [(f.kind, f.by) for f in findings] == [("customer_id", "column name")]
    assert "customer identifier" in findings[0].describe() and "phone" not in findings[0].describe()


def test_the_key_column_is_never_a_finding_whatever_its_values_look_like():
    frame = pd.DataFrame({"customer_id": CN_MOBILES * 4, "amount": [1] * 20})
    assert scan_table("transactions", frame, schema_columns=SCHEMA_COLUMNS["transactions"]) == []
    assert scan_table("transactions", frame) == []  # the pipeline always tokenizes it


@pytest.mark.parametrize(("column", "kind"), [
    ("customer_name", "name"), ("会员姓名", "name"), ("Billing Name", "name"), ("mobile", "phone"),
    ("手机号", "phone"), ("会员手机号", "phone"), ("電話", "phone"), ("收货地址", "address")])
def test_names_and_contacts_of_customers_stay_what_they_are(column, kind):
    assert kind_from_column_name(column) == kind


PRODUCTS = ["Blue Denim Jacket", "Olive Oil", "Yoga Mat", "Face Cream", "Green Tea Set", "Leather Wallet"]


@pytest.mark.parametrize("column", ["Lineitem name", "商品名称", "product", "title", "product_title", "item_name",
                                    "Product Name", "line_item_name", "产品名称"])
def test_product_names_are_not_person_names(column):
    assert kind_from_column_name(column) is None
    frame = pd.DataFrame({column: PRODUCTS * 5})
    assert scan_table("transactions", frame, schema_columns=SCHEMA_COLUMNS["transactions"]) == []
    # the same values under a column that names nothing are still judged as names (they look like them)
    assert [f.kind for f in scan_table("transactions", frame.set_axis(["x"], axis=1))] == ["name"]


@pytest.mark.parametrize(
    ("values", "pattern"),
    [(CN_MOBILES, "cn-mobile"),
     (["+44 20 7946 0958", "+49 30 1234567", "+4915123456789", "+33 1 42 68 53 00", "+47 912 34 567"], "e164"),
     (["(201) 555-0123", "201-555-0188", "201.555.0147", "+1 415 555 0132", "1-800-555-0199"], "nanp"),
     (["010-12345678", "021-87654321", "030-1234567", "020 7946 0958", "0755-2345678"], "trunk")],
)
def test_phone_numbers_are_recognised_by_country_aware_formats(values, pattern):
    found = pattern_from_values(pd.Series(values * 3))
    assert found is not None and found[0] == "phone" and found[2] == pattern and found[1] == 1.0


@pytest.mark.parametrize(
    "values",
    [["10023456789", "10023456790", "10023456791"],  # 11-digit member numbers that are not CN mobiles
     ["2015550123", "4155550132", "3125550147"],  # bare 10-digit runs: ids as often as phones
     ["00012345", "00012346", "00012347"],
     ["123456789012345", "123456789012346", "123456789012347"]],
)
def test_bare_digit_runs_are_ids_not_phone_numbers(values):
    assert kind_from_values(pd.Series(values * 4)) is None
    assert kind_from_values(pd.Series([int(v) for v in values] * 4)) is None


def test_a_finding_shows_the_pattern_class_never_a_value_nor_a_foreign_example():
    frame = pd.DataFrame({"联系方式": CN_MOBILES * 3, "notes": CN_MOBILES * 3, "电话": ["x"] * 15})
    findings = {f.column: f for f in scan_table("customers", frame, schema_columns=SCHEMA_COLUMNS["customers"])}
    assert findings["联系方式"].by == "column name" and findings["notes"].by == "values"
    for column in ("联系方式", "notes"):
        text = findings[column].describe()
        assert findings[column].example == "CN mobile number (1[3-9] + 9 digits, optional +86)"
        assert "CN mobile number" in text and "555" not in text and "+1" not in text
        assert not any(v in text or v.replace(" ", "") in text for v in CN_MOBILES)
    # judged by its name alone (no value follows a known format): the kind, not a made-up example
    assert findings["电话"].example == "phone number (by its column name)"

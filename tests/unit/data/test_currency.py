"""The federation's rate table: parsed from flags or a TOML file, refused with the flag to fix, applied to money."""

from __future__ import annotations

import pandas as pd
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.data.currency import RateTable, convert, parse_rates, partner_currencies
from fedinsight.data.schema import MONEY_COLUMNS, PartnerData
from fedinsight.federation.job import JobSettings
from fedinsight.simulation.options import SimulationOptions


def test_money_columns_are_declared_in_the_schema():
    assert MONEY_COLUMNS == {"transactions": ("amount",), "items": ("price",)}


def test_inline_and_toml_rates_give_the_same_table():
    inline = parse_rates("cny=0.138, EUR=1.08")
    assert inline == {"CNY": 0.138, "EUR": 1.08}
    assert parse_rates("CNY = 0.138\nEUR = 1.08\n") == inline
    assert parse_rates("[rates]\nCNY = 0.138\nEUR = 1.08\n") == inline


@pytest.mark.parametrize(("currency", "rates", "message"), [
    ("", "CNY=0.138", "--rates needs --currency"),
    ("DOLLAR", "", "--currency: 'DOLLAR' is not an ISO 4217 currency code"),
    ("USD", "RMB=0.138", "--rates: 'RMB' is not an ISO 4217"),
    ("USD", "CNY=-1", "the rate of CNY must be a positive number"),
    ("USD", "CNY=abc", "the rate of CNY must be a positive number"),
    ("USD", "CNY", "'CNY' must be CODE=RATE"),
    ("USD", "USD=2", "USD is the reporting currency, its rate is 1"),
    ("USD", "CNY = [1]\n", "the rate of CNY must be a positive number"),
])
def test_a_bad_table_is_one_config_error_naming_the_flag(currency, rates, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        RateTable.of(currency, rates)


def test_options_carry_the_canonical_table_in_the_run_config():
    job = JobSettings(currency="usd", rates="EUR = 1.08\nCNY = 0.138\n")
    assert job.to_run_config()["currency"] == "USD" and job.to_run_config()["rates"] == "CNY=0.138,EUR=1.08"
    back = JobSettings.from_run_config(job.to_run_config())
    assert back.rate_table() == RateTable("USD", {"CNY": 0.138, "EUR": 1.08})
    assert back.message_config() == {"currency": "USD", "rates": "CNY=0.138,EUR=1.08"}
    assert JobSettings().message_config() == {} and JobSettings().currency_summary() is None
    with pytest.raises(ConfigError, match="--rates needs --currency"):
        SimulationOptions(rates="CNY=0.1")


def test_a_currency_the_table_lacks_is_refused_naming_it_and_the_flag():
    table = RateTable.of("USD", "EUR=1.08")
    with pytest.raises(ConfigError, match=r"partner cn's amounts are in CNY.*--rates CNY=<USD per CNY>"):
        partner_currencies({"cn": "CNY", "us": "USD"}, table)
    assert partner_currencies({"eu": "EUR", "plain": None}, table) == {"eu": "EUR", "plain": None}


def test_different_currencies_without_a_table_are_refused():
    with pytest.raises(ConfigError, match=r"different currencies \(cn: CNY, us: USD\).*--currency"):
        partner_currencies({"cn": "CNY", "us": "USD"}, None)
    assert partner_currencies({"a": "CNY", "b": "CNY", "c": None}, None)["a"] == "CNY"  # one currency: as it is


def test_convert_multiplies_money_columns_only():
    tx = pd.DataFrame({"customer_id": ["a", "b"], "amount": [100.0, 250.0], "quantity": [1, 3]})
    items = pd.DataFrame({"item_id": ["x"], "price": [10.0]})
    data = PartnerData("cn", transactions=tx, items=items, meta={"currency": "CNY"})
    out = convert(data, RateTable.of("USD", "CNY=0.138"))
    assert out.transactions["amount"].tolist() == pytest.approx([13.8, 34.5])
    assert out.items["price"].tolist() == pytest.approx([1.38])
    assert out.transactions["quantity"].tolist() == [1, 3]
    assert out.meta["currency"] == "USD" and out.meta["declared_currency"] == "CNY" and out.meta["rate"] == 0.138
    assert data.transactions["amount"].tolist() == [100.0, 250.0]  # the input (a cached frame) is untouched
    assert convert(out, RateTable.of("USD", "CNY=0.138")) is out  # converted once only
    assert convert(data, None) is data
    plain = convert(PartnerData("p", transactions=tx, meta={"currency": None}), RateTable.of("USD", ""))
    assert plain.transactions["amount"].tolist() == [100.0, 250.0] and plain.meta["declared_currency"] is None


def test_the_summary_record_says_how_an_undeclared_partner_was_taken():
    record = RateTable.of("USD", "CNY=0.138").record({"cn": "CNY", "plain": None})
    assert record == {"reporting": "USD", "rates": {"CNY": 0.138},
                      "partners": {"cn": "CNY", "plain": "not declared: taken as USD"}}

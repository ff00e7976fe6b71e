"""The partner data view converts a mapped partner's amounts to the job's reporting currency, or refuses."""

from __future__ import annotations

import pytest
from flwr.app import Context, RecordDict
from support.exports import write_cn_export, write_us_export

from fedinsight.core.errors import ConfigError
from fedinsight.data.currency import RateTable
from fedinsight.partner.policy_init import init_partner
from fedinsight.partner.side import PartnerSide, open_partner
from fedinsight.partner.view import PartnerView


@pytest.fixture(scope="module")
def cn(tmp_path_factory):
    export = write_cn_export(tmp_path_factory.mktemp("cn") / "华东零售", customers=80)
    init_partner(export.folder)
    return export


def test_a_cny_partner_reads_its_amounts_in_usd(cn):
    raw = PartnerView(cn.folder, "analytics").tables()
    converted = PartnerView(cn.folder, "analytics", rates=RateTable.of("USD", "CNY=0.138,EUR=1.08")).tables()
    assert raw.meta["currency"] == "CNY" and converted.meta["currency"] == "USD"
    assert converted.meta["declared_currency"] == "CNY"
    assert raw.transactions["amount"].sum() > 0
    assert converted.transactions["amount"].to_numpy() == pytest.approx(raw.transactions["amount"].to_numpy() * 0.138)
    assert converted.transactions["quantity"].tolist() == raw.transactions["quantity"].tolist()
    again = PartnerView(cn.folder, "analytics").tables()  # the cached frames were not converted in place
    assert again.transactions["amount"].to_numpy() == pytest.approx(raw.transactions["amount"].to_numpy())


def test_a_partner_whose_currency_the_table_lacks_refuses_before_reading(cn):
    with pytest.raises(ConfigError, match=r"partner 华东零售's amounts are in CNY.*--rates CNY=<EUR per CNY>"):
        PartnerView(cn.folder, "analytics", rates=RateTable.of("EUR", "USD=0.93"))


def test_the_job_table_reaches_the_view_from_the_message_config(cn):
    context = Context(run_id=0, node_id=0, node_config={"data-path": str(cn.folder)}, state=RecordDict(),
                      run_config={})
    partner = PartnerSide("analytics", context, {"currency": "CNY", "rates": "USD=7.2"})
    assert partner.data().meta["currency"] == "CNY" and partner.data().meta["rate"] == 1.0
    with pytest.raises(ConfigError, match="does not cover"):
        PartnerSide("analytics", context, {"currency": "JPY", "rates": "USD=150"})


def test_the_reporting_currency_itself_needs_no_rate(tmp_path):
    export = write_us_export(tmp_path / "shop", customers=40)
    init_partner(export.folder)
    raw = open_partner(export.folder, "analytics").data()
    same = open_partner(export.folder, "analytics", currency={"currency": "USD", "rates": ""}).data()
    assert same.transactions["amount"].tolist() == raw.transactions["amount"].tolist()
    assert same.meta["rate"] == 1.0


def test_insights_spend_and_ltv_tiers_are_computed_in_the_reporting_currency(cn):
    from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features

    rules = FeatureRules(as_of="2026-01-01")
    raw = customer_features(PartnerView(cn.folder, "analytics").tables(), rules)
    usd = customer_features(PartnerView(cn.folder, "analytics", rates=RateTable.of("USD", "CNY=0.138")).tables(),
                            rules)
    assert raw.spend_now.sum() > 0
    assert usd.spend_now == pytest.approx(raw.spend_now * 0.138)
    assert usd.spend_prev == pytest.approx(raw.spend_prev * 0.138)
    # the declared tier bounds are in the reporting currency now: fewer customers reach a high tier
    assert (usd.tier_now <= raw.tier_now).all() and (usd.tier_now < raw.tier_now).any()

"""The partner data view on a partner's own exports: mapped, protected, consent-filtered, as for canonical files."""

from __future__ import annotations

import pandas as pd
import pytest
from support.exports import CN_MAPPING, US_MAPPING, write_cn_export, write_us_export

from fedinsight.cli import main
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.policy_init import init_partner
from fedinsight.partner.side import PartnerSide, open_partner
from fedinsight.partner.view import PartnerView
from fedinsight.privacy.tokenize import Tokenizer


def _tokens(view: PartnerView, ids: list[str]) -> set[str]:
    return set(Tokenizer(view.policy.tokenization_ring()).tokenize(pd.Series(ids, dtype="string")))


@pytest.mark.parametrize("style", ["cn", "us"])
def test_opted_out_and_erased_customers_appear_nowhere(tmp_path, style):
    export = (write_cn_export if style == "cn" else write_us_export)(tmp_path / "partner", customers=200)
    init_partner(export.folder)
    erased = export.expected["transactions"]["customer_id"].value_counts().index[:3].tolist()
    forget_customers(erased, find_policy(export.folder), note="test")
    view = PartnerView(export.folder, "training")
    data = view.tables()
    excluded = _tokens(view, export.opted_out + erased)
    assert export.opted_out and excluded
    for name in ("customers", "transactions", "events"):
        frame = getattr(data, name)
        assert not excluded & set(frame["customer_id"]), name
    assert len(data.customers) == 200 - len(set(export.opted_out) | set(erased))
    assert data.meta["protection"]["excluded_no_consent"] == len(export.opted_out)
    assert data.meta["timezone"] == ("Asia/Shanghai" if style == "cn" else "America/New_York")


def test_personal_data_in_chinese_columns_is_declared_and_dropped(tmp_path):
    export = write_cn_export(tmp_path / "partner", customers=80)
    path, findings = init_partner(export.folder)
    policy = path.read_text(encoding="utf-8")
    assert '"customers.姓名" = "drop"' in policy and '"transactions.邮箱" = "drop"' in policy
    data = PartnerView(export.folder, "analytics").tables()
    assert "姓名" not in data.customers.columns and "邮箱" not in data.transactions.columns
    raw_phones = set(export.expected["customers"]["customer_id"])
    for frame in data.tables().values():
        for column in frame.columns:
            assert not raw_phones & set(frame[column].astype("str")), column  # only tokens of the phone ids


def test_identities_give_the_partner_its_own_ids_back(tmp_path):
    export = write_cn_export(tmp_path / "partner", customers=60)
    init_partner(export.folder)
    view = PartnerView(export.folder, "analytics")
    tokens = view.tables().customers["customer_id"]
    assert set(view.identities(tokens)) <= set(export.expected["customers"]["customer_id"])


def test_a_mapping_file_named_in_the_node_config(tmp_path):
    export = write_cn_export(tmp_path / "data", customers=60, mapping=False)
    mapping = tmp_path / "cn-mapping.toml"
    text = CN_MAPPING
    for name in ("订单明细_*.csv", "会员信息.csv", "营销活动日志.csv"):
        text = text.replace(f'"{name}"', f'"data/{name}"')
    mapping.write_text(text, encoding="utf-8")
    from flwr.app import Context, RecordDict

    init_partner(export.folder, mapping=mapping)
    context = Context(run_id=0, node_id=0, node_config={"data-path": str(export.folder), "mapping": str(mapping)},
                      state=RecordDict(), run_config={})
    partner = PartnerSide("analytics", context, {})
    data = partner.data()
    assert data.meta["currency"] == "CNY" and data.meta["mapping"] == str(mapping)
    assert 0 < len(data.transactions) <= len(export.expected["transactions"])
    again = open_partner(export.folder, "analytics", mapping_file=mapping).data()
    pd.testing.assert_frame_equal(again.transactions, data.transactions)


def test_partner_check_shows_the_mapping(tmp_path, capsys):
    export = write_us_export(tmp_path / "shop", customers=60)
    assert main(["partner", "init", "--data", str(export.folder)]) == 0
    capsys.readouterr()
    assert main(["partner", "check", "--data", str(export.folder), "--json"]) == 0
    report = capsys.readouterr().out
    assert '"timezone": "America/New_York"' in report and '"currency": "USD"' in report
    assert "mapping.toml" in report


def test_a_deployed_partner_names_its_mapping_in_partner_toml(tmp_path):
    from fedinsight.partner.config import load_partner_config
    from fedinsight.partner.process import node_config, validate_partner_data

    export = write_us_export(tmp_path / "exports", customers=60, mapping=False)
    text = US_MAPPING
    for name in ("orders_export.csv", "customers_export.csv", "campaign_log.csv"):
        text = text.replace(f'"{name}"', f'"exports/{name}"')
    (tmp_path / "shop-mapping.toml").write_text(text, encoding="utf-8")
    init_partner(export.folder, mapping=tmp_path / "shop-mapping.toml")
    toml = tmp_path / "partner.toml"
    toml.write_text('[partner]\nid = "shop"\ndata-path = "exports"\nmapping = "shop-mapping.toml"\n\n'
                    '[superlink]\naddress = "127.0.0.1:9"\nca-cert = "ca.crt"\nprivate-key = "shop.key"\n')
    config = load_partner_config(toml, check_files=False)
    assert f'mapping="{tmp_path / "shop-mapping.toml"}"' in node_config(config)
    rows = validate_partner_data(config)
    assert rows["transactions"] > 0 and rows["events"] > 0


def test_personal_data_under_a_canonical_name_is_named_by_its_source_column(tmp_path):
    from fedinsight.core.errors import PiiDetectedError

    export = write_cn_export(tmp_path / "partner", customers=60)
    members = export.folder / "会员信息.csv"
    frame = pd.read_csv(members, dtype=str, encoding="gb18030")
    frame["收货地址"] = [f"上海市南京路{i + 1}号" for i in range(len(frame))]
    frame.to_csv(members, index=False, encoding="gb18030")
    export.mapping_path.write_text(CN_MAPPING.replace('region = "城市"', 'region = "收货地址"'), encoding="utf-8")
    with pytest.raises(PiiDetectedError, match="source column 收货地址: customers.region looks like a street address"):
        PartnerView(export.folder, "analytics").tables()
    path, _ = init_partner(export.folder)
    assert '"customers.region" = "drop"   # source column 收货地址: ' in path.read_text(encoding="utf-8")

"""`partner map --suggest`: a draft mapping good enough to read both export styles as written (CN: one edit)."""

from __future__ import annotations

import json
import tomllib

import pandas as pd
import pytest
from support.exports import write_cn_export, write_us_export

from fedinsight.cli import main
from fedinsight.data.federation import load_partner_folder
from fedinsight.data.suggest import suggest_mapping


def _read(folder):
    (data,) = load_partner_folder(folder).values()
    return data


def _same_orders(data, export):
    got = data.transactions.set_index("transaction_id").sort_index()
    want = export.expected["transactions"].set_index("transaction_id").sort_index()
    assert list(got.index) == list(want.index)
    assert got["amount"].to_numpy() == pytest.approx(want["amount"].to_numpy())
    assert got["quantity"].tolist() == want["quantity"].tolist()
    assert got["customer_id"].tolist() == want["customer_id"].tolist()
    assert got["timestamp"].tolist() == want["timestamp"].tolist()


def test_us_shop_draft_reads_without_edits(tmp_path, capsys):
    export = write_us_export(tmp_path / "shop", mapping=False)
    assert main(["partner", "map", "--suggest", str(export.folder)]) == 0
    assert "the draft reads every table" in capsys.readouterr().out
    doc = tomllib.loads(export.mapping_path.read_text(encoding="utf-8"))
    assert doc["timezone"] == "America/New_York" and doc["currency"] == "USD"
    tx = doc["tables"]["transactions"]
    assert tx["group_by"] == "Name" and tx["columns"]["amount"] == "Total" and tx["columns"]["customer_id"] == "Email"
    assert doc["tables"]["customers"]["columns"]["customer_id"] == "Email"  # the id orders use, not Customer ID
    assert doc["tables"]["events"]["values"]["stage"] == {"impression": "exposure", "click": "click",
                                                          "add_to_cart": "participate", "conversion": "convert"}
    data = _read(export.folder)
    _same_orders(data, export)
    assert sorted(data.customers.loc[~data.customers["consent"].astype(bool), "customer_id"]) == sorted(
        export.opted_out)
    assert sorted(data.events["timestamp"]) == sorted(export.expected["events"]["timestamp"])  # naive New York times
    assert main(["data", "validate", str(export.folder)]) == 0


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig"])
def test_chinese_retailer_draft_reads_after_setting_the_time_zone(tmp_path, encoding):
    export = write_cn_export(tmp_path / "华东零售", encoding=encoding, mapping=False)
    draft = suggest_mapping(export.folder)
    doc = tomllib.loads(draft.text)
    assert "timezone" not in doc and "# timezone = \"Asia/Shanghai\"" in draft.text  # no offsets: a placeholder
    assert doc["currency"] == "CNY" and "CHECK: ¥ is also the Japanese yen" in draft.text
    tx = doc["tables"]["transactions"]
    assert tx["files"] == ["订单明细_*.csv"] and tx["group_by"] == "订单编号"
    assert tx["timestamp_format"] == "%Y/%m/%d %H:%M:%S"
    assert tx["columns"] == {"transaction_id": "订单编号", "customer_id": "会员手机号", "timestamp": "下单时间",
                             "amount": "实付金额", "quantity": "数量", "category": "品类", "channel": "渠道"}
    assert doc["tables"]["customers"]["values"]["consent"] == {"是": True, "否": False}
    assert doc["tables"]["events"]["values"]["stage"] == {"曝光": "exposure", "点击": "click", "参与": "participate",
                                                          "转化": "convert"}
    assert "邮箱 (e-mail addresses)" in draft.text and "姓名 (a person's name)" in draft.text
    # the documented minimal edit: uncomment the time zone line
    export.mapping_path.write_text(draft.text.replace('# timezone = "Asia/Shanghai"', 'timezone = "Asia/Shanghai"'),
                                   encoding="utf-8")
    data = _read(export.folder)
    _same_orders(data, export)
    assert data.meta["timezone"] == "Asia/Shanghai"
    assert sorted(data.customers["signup_date"]) == sorted(export.expected["customers"]["signup_date"])


def test_the_draft_reads_as_utc_until_the_zone_is_set(tmp_path):
    export = write_cn_export(tmp_path / "p", customers=60, mapping=False)
    export.mapping_path.write_text(suggest_mapping(export.folder).text, encoding="utf-8")
    data = _read(export.folder)
    got = data.transactions.sort_values("transaction_id")["timestamp"].reset_index(drop=True)
    want = export.expected["transactions"].sort_values("transaction_id")["timestamp"].reset_index(drop=True)
    assert ((got - want) == pd.Timedelta(hours=8)).all()  # Beijing wall-clock read as UTC


def test_refuses_to_overwrite_and_writes_elsewhere_with_relative_globs(tmp_path, capsys):
    export = write_cn_export(tmp_path / "exports", customers=60, mapping=False)
    before = sorted(p.name for p in export.folder.iterdir())
    out = tmp_path / "config" / "partner-mapping.toml"
    assert main(["partner", "map", "--suggest", str(export.folder), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mapping"] == str(out) and set(result["tables"]) == {"customers", "transactions", "events"}
    assert sorted(p.name for p in export.folder.iterdir()) == before  # only the draft was written, elsewhere
    assert '"../exports/订单明细_*.csv"' in out.read_text(encoding="utf-8")
    text = out.read_text(encoding="utf-8")
    assert main(["partner", "map", "--suggest", str(export.folder), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text(encoding="utf-8") == text
    assert main(["partner", "map", "--suggest", str(export.folder), "--out", str(out), "--force"]) == 0
    assert main(["data", "validate", str(export.folder), "--mapping", str(out)]) == 0


def test_show_how_a_folder_is_read(tmp_path, capsys):
    export = write_us_export(tmp_path / "shop", customers=60)
    assert main(["partner", "map", "--data", str(export.folder), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["timezone"] == "America/New_York"
    assert shown["tables"]["transactions"]["columns"]["amount"] == "Total"
    assert shown["tables"]["transactions"]["rows"] == len(export.expected["transactions"])


def test_nothing_recognisable_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "misc"
    folder.mkdir()
    (folder / "notes.csv").write_text("a,b\nx,y\n")
    assert main(["partner", "map", "--suggest", str(folder)]) == 2
    assert "no table recognised" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.csv"]

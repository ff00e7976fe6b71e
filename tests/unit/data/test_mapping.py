"""Reading a partner's own exports through its mapping.toml: the canonical tables come out right."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from support.exports import CN_MAPPING, write_cn_export, write_us_export

from fedinsight.core.errors import DataValidationError, MappingError
from fedinsight.data.federation import check_paths, load_partner_folder, partner_folders
from fedinsight.data.mapping import load_mapping


def _sorted(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame.sort_values([key, "timestamp"] if "timestamp" in frame else [key]).reset_index(drop=True)


def _compare(got: pd.DataFrame, want: pd.DataFrame, key: str) -> None:
    got = _sorted(got[list(want.columns)], key)
    want = _sorted(want, key)
    for column in want.columns:
        if column == "amount":
            assert got[column].to_numpy() == pytest.approx(want[column].to_numpy())
        else:
            assert got[column].astype("str").tolist() == want[column].astype("str").tolist(), column


def _partner(folder: Path, **kw):
    (data,) = load_partner_folder(folder, **kw).values()
    return data


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig"])
def test_chinese_exports_read_as_canonical_tables(tmp_path, encoding):
    export = write_cn_export(tmp_path / "华东零售", encoding=encoding)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in export.folder.iterdir())
    data = _partner(export.folder)
    _compare(data.transactions, export.expected["transactions"], "transaction_id")
    _compare(data.customers, export.expected["customers"], "customer_id")
    _compare(data.events, export.expected["events"], "customer_id")
    assert data.meta["timezone"] == "Asia/Shanghai" and data.meta["currency"] == "CNY"
    # unmapped source columns stay under the partner's own names (the protection policy decides about them)
    assert {"邮箱", "商品编码"} <= set(data.transactions.columns) and "姓名" in data.customers.columns
    assert "会员手机号" not in data.transactions.columns  # a mapped column appears once, under its canonical name
    assert sorted((p.name, p.stat().st_mtime_ns) for p in export.folder.iterdir()) == before  # nothing rewritten


def test_us_exports_read_as_canonical_tables(tmp_path):
    export = write_us_export(tmp_path / "shop")
    data = _partner(export.folder)
    _compare(data.transactions, export.expected["transactions"], "transaction_id")
    _compare(data.customers, export.expected["customers"], "customer_id")
    _compare(data.events, export.expected["events"], "customer_id")
    assert data.meta["timezone"] == "America/New_York" and data.meta["currency"] == "USD"


def test_known_values_utc_offsets_and_grouped_lines(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "订单明细_2024.csv").write_text(
        "订单编号,会员手机号,下单时间,实付金额,数量,品类,渠道,邮箱\n"
        "A1,13800000001,2024/01/16 13:32:00,\"¥1,204.50\",2,家居,门店,a@example.cn\n"
        "A1,13800000001,2024/01/16 13:31:00,¥10.25,1,数码,APP,a@example.cn\n"
        "A2,13800000002,2024/02/01 08:00:00,¥3,1,食品,APP,b@example.cn\n", encoding="gb18030")
    (folder / "mapping.toml").write_text(CN_MAPPING.split("[tables.customers]")[0], encoding="utf-8")
    tx = _partner(folder).transactions.set_index("transaction_id")
    assert len(tx) == 2  # a transaction is an order, not a line
    assert tx.loc["A1", "amount"] == pytest.approx(1214.75) and tx.loc["A1", "quantity"] == 3
    assert tx.loc["A1", "timestamp"] == pd.Timestamp("2024-01-16 05:31:00")  # earliest line, Beijing -> UTC
    assert tx.loc["A1", "category"] == "家居" and tx.loc["A1", "channel"] == "门店"  # the first line's
    assert tx.loc["A2", "timestamp"] == pd.Timestamp("2024-02-01 00:00:00")


def test_offsets_in_the_data_are_honoured(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "orders_export.csv").write_text(
        "Name,Email,Created at,Total,Lineitem quantity,Source\n"
        "#1001,a@x.com,2024-03-05 14:22:10 -0400,\"$1,204.00\",1,web\n"
        "#1001,a@x.com,2024-03-05 14:22:10 -0400,,2,\n"
        "#1002,b@x.com,2024-01-05 09:00:00 -0500,$636.50,1,pos\n")
    (folder / "mapping.toml").write_text(
        'timezone = "Asia/Tokyo"\n[tables.transactions]\nfiles = ["orders_export.csv"]\ngroup_by = "Name"\n'
        '[tables.transactions.columns]\ncustomer_id = "Email"\ntimestamp = "Created at"\namount = "Total"\n'
        'quantity = "Lineitem quantity"\nchannel = "Source"\n')
    tx = _partner(folder).transactions.set_index("transaction_id")
    assert tx.loc["#1001", "timestamp"] == pd.Timestamp("2024-03-05 18:22:10")
    assert tx.loc["#1002", "timestamp"] == pd.Timestamp("2024-01-05 14:00:00")
    assert tx.loc["#1001", "amount"] == 1204.0 and tx.loc["#1001", "quantity"] == 3  # Total on the first line only
    assert tx.loc["#1001", "channel"] == "web"


def test_decimal_comma_and_semicolon_delimiter(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "umsatz.csv").write_text("Kunde;Datum;Betrag;Menge\nk1;2024-03-05 10:00;1.204,50 €;1\n"
                                       "k2;2024-03-06 10:00;12,5;2\n", encoding="utf-8")
    (folder / "mapping.toml").write_text(
        'timezone = "Europe/Berlin"\ncurrency = "EUR"\ndecimal = ","\ndelimiter = ";"\n'
        '[tables.transactions]\nfiles = ["umsatz.csv"]\n[tables.transactions.columns]\ncustomer_id = "Kunde"\n'
        'timestamp = "Datum"\namount = "Betrag"\nquantity = "Menge"\n')
    tx = _partner(folder).transactions
    assert tx["amount"].tolist() == [1204.5, 12.5]
    assert tx["timestamp"].iloc[0] == pd.Timestamp("2024-03-05 09:00")


def test_a_mapped_folder_is_a_partner_whatever_its_files_are_called(tmp_path):
    write_cn_export(tmp_path / "华东 retail")
    write_us_export(tmp_path / "shop-us")
    (tmp_path / "notes").mkdir()  # no mapping, no tables: not a partner
    assert [p.name for p in partner_folders(tmp_path)] == ["shop-us", "华东 retail"]
    assert sorted(load_partner_folder(tmp_path)) == ["shop-us", "华东 retail"]


def test_mapping_given_as_a_file_elsewhere(tmp_path):
    export = write_cn_export(tmp_path / "data", mapping=False)
    elsewhere = tmp_path / "config" / "cn.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(CN_MAPPING.replace('"订单明细_*.csv"', '"../data/订单明细_*.csv"')
                         .replace('"会员信息.csv"', '"../data/会员信息.csv"')
                         .replace('"营销活动日志.csv"', '"../data/营销活动日志.csv"'), encoding="utf-8")
    data = _partner(export.folder, mapping=elsewhere)
    assert len(data.transactions) == len(export.expected["transactions"])


def test_canonical_folders_are_unchanged_and_say_utc(tmp_path):
    folder = tmp_path / "partner-0"
    folder.mkdir()
    (folder / "transactions.csv").write_text("customer_id,timestamp,amount,quantity\nc1,2024-01-01 10:00,1.5,1\n")
    data = _partner(folder)
    assert data.meta["timezone"] == "UTC" and data.meta["currency"] is None
    assert data.transactions["timestamp"].iloc[0] == pd.Timestamp("2024-01-01 10:00")


def test_problems_name_the_source_file_and_column_and_show_values(tmp_path):
    export = write_cn_export(tmp_path / "p")
    text = CN_MAPPING.split("[tables.events.values.stage]")[0]  # no value map for 事件类型
    export.mapping_path.write_text(text, encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        load_partner_folder(export.folder)
    (problem,) = info.value.problems
    message = str(problem)
    assert problem.file.endswith("营销活动日志.csv") and problem.column == "事件类型 (stage)"
    assert "expected one of exposure, click, participate, convert" in message and "(lines 2, 3," in message
    assert "values: '曝光'" in message and "'点击'" in message
    assert "曝光" not in info.value.public_message  # values never leave the partner in a job's error reply


def test_canonical_files_show_offending_values_too(tmp_path):
    (tmp_path / "events.csv").write_text("customer_id,timestamp,campaign,channel,stage\n"
                                         "c,2024-01-01,x,email,bought\nc,2024-01-02,x,email,viewed\n")
    _, problems = check_paths([tmp_path])[:2]
    (problem,) = problems
    assert problem.values == ("bought", "viewed") and "values: 'bought', 'viewed'" in str(problem)


def test_a_raw_folder_without_mapping_says_what_to_do(tmp_path):
    write_cn_export(tmp_path / "p", mapping=False)
    files, problems, _ = check_paths([tmp_path / "p"])
    (problem,) = problems
    assert "no .csv or .parquet files found" not in problem.message
    assert "订单明细_2024.csv" in problem.message and "fedinsight partner map --suggest" in problem.message
    with pytest.raises(DataValidationError, match="partner map --suggest"):
        load_partner_folder(tmp_path / "p")


def test_lines_of_one_order_must_name_one_customer(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "订单明细.csv").write_text("订单编号,会员手机号,下单时间,实付金额,数量\n"
                                        "A1,1,2024/01/16 13:32:00,1,1\nA1,2,2024/01/16 13:32:00,1,1\n")
    (folder / "mapping.toml").write_text(CN_MAPPING.split("[tables.customers]")[0]
                                         .replace("订单明细_*.csv", "订单明细.csv")
                                         .replace('category = "品类"\nchannel = "渠道"\n', ""), encoding="utf-8")
    with pytest.raises(DataValidationError, match="lines of one order name different customers"):
        load_partner_folder(folder)


def test_mapping_records_what_it_reads(tmp_path):
    export = write_cn_export(tmp_path / "p")
    mapping = load_mapping(export.mapping_path)
    assert [f.name for f in mapping.tables["transactions"].files] == export.files["transactions"]
    assert mapping.timezone == "Asia/Shanghai" and mapping.currency == "CNY"
    with pytest.raises(MappingError):
        load_mapping(tmp_path / "missing.toml")


def test_a_folder_of_exports_without_mapping_next_to_mapped_partners_is_reported(tmp_path):
    write_cn_export(tmp_path / "华东零售", customers=40)
    write_us_export(tmp_path / "us shop", customers=40, mapping=False)  # forgot its mapping
    _, problems, _ = check_paths([tmp_path])
    (problem,) = problems
    assert problem.file == str(tmp_path / "us shop") and "partner map --suggest" in problem.message
    assert "'" + str(tmp_path / "us shop") + "'" in problem.message  # the command to run, quoted
    with pytest.raises(DataValidationError, match="us shop"):
        load_partner_folder(tmp_path)  # not silently a federation of one


def test_canonical_files_beside_a_mapping_are_read_in_its_time_zone(tmp_path):
    export = write_cn_export(tmp_path / "p", customers=40)
    customer = export.expected["customers"]["customer_id"].iloc[0]
    (export.folder / "interactions.csv").write_text(f"customer_id,item_id,timestamp\n{customer},I1,2024-01-16 13:32\n")
    (export.folder / "items.csv").write_text("item_id,title,price\nI1,茶杯,12.5\n")
    data = _partner(export.folder)
    assert data.interactions["timestamp"].iloc[0] == pd.Timestamp("2024-01-16 05:32")  # Beijing time -> UTC
    assert data.items["title"].tolist() == ["茶杯"]


def test_value_maps_ignore_case_when_nothing_matches_exactly(tmp_path):
    export = write_us_export(tmp_path / "shop", customers=40)
    log = export.folder / "campaign_log.csv"
    log.write_text(log.read_text().replace(",impression,", ",Impression,"))
    data = _partner(export.folder)
    assert set(data.events["stage"]) <= {"exposure", "click", "participate", "convert"}


def test_the_view_cache_key_follows_the_files(tmp_path):
    export = write_cn_export(tmp_path / "p", customers=40)
    before = load_mapping(export.mapping_path).fingerprint
    members = export.folder / "会员信息.csv"
    members.write_bytes(members.read_bytes() + "13899999999,王伟,男,30,北京,2024/01/01,是\n".encode("gb18030"))
    assert load_mapping(export.mapping_path).fingerprint != before


def test_the_view_cache_key_follows_an_edit_that_keeps_size_and_time(tmp_path):
    """A consent flipped in place (same length) with the modification time put back still changes the key: the
    change time cannot be set back, so a kept view never serves a customer who has since opted out."""
    import os

    export = write_cn_export(tmp_path / "p", customers=40)
    members = export.folder / "会员信息.csv"
    before, stat = load_mapping(export.mapping_path).fingerprint, members.stat()
    text = members.read_bytes()
    flipped = text.replace(",是\n".encode("gb18030"), ",否\n".encode("gb18030"), 1)
    assert flipped != text and len(flipped) == len(text)
    members.write_bytes(flipped)
    os.utime(members, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert members.stat().st_size == stat.st_size and members.stat().st_mtime_ns == stat.st_mtime_ns
    assert load_mapping(export.mapping_path).fingerprint != before

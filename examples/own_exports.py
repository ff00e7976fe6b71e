"""Partners' own exports, as a new user brings them: a Chinese retailer's and a US Shopify-style shop's.

The one generator of such exports: docs/own-data.md's tutorial runs it (``python examples/own_exports.py
exports``), and the tests import it (through ``tests/support/exports.py``). Not part of the fedinsight package.

Both are written from the synthetic generator's canonical tables, so every test knows exactly what a mapped
read must give back (``Export.expected``: canonical tables, timestamps in naive UTC, one row per order):

* **CN** (``write_cn_export``): ``订单明细_2024.csv`` and ``订单明细_2025.csv`` with order LINES (订单编号,
  会员手机号, 邮箱, 下单时间 ``2024/01/16 13:32:00`` in Beijing time, 商品编码, 品类, 实付金额 ``¥1,204.50`` per
  line, 数量, 渠道 微信小程序/APP/门店), ``会员信息.csv`` (姓名, 性别, 年龄, 城市, 注册日期 ``2023/05/06``,
  是否同意营销 是/否) and ``营销活动日志.csv`` (活动名称, 渠道, 实验组 A/B, 事件类型 曝光/点击/参与/转化, 事件时间),
  in GB18030 or UTF-8 with BOM.
* **US** (``write_us_export``): ``orders_export.csv`` (Shopify: ``Name`` #1001 on every line, ``Created at``
  ``2024-03-05 14:22:10 -0400``, ``Total`` ``$1,204.00`` on an order's first line only, ``Lineitem quantity``,
  ``Source``, ``Billing Name``), ``customers_export.csv`` (``Customer ID``, names, ``Email``, ``Accepts Email
  Marketing`` yes/no, address, ``Phone``) and ``campaign_log.csv`` (``Event`` impression/click/add_to_cart/
  conversion, naive ``03/05/2024 14:22`` New York times).

With ``catalogue=True`` each also gets its product list (CN ``商品资料.csv``: 商品编码, 商品名称, 品类; US
``products_export.csv``: Handle, Title, Type, Variant SKU, Variant Price), and each customer buys mostly from a
few SKUs of their own taste, so a recommender has something to learn from the order lines.

``MAPPINGS`` holds the hand-written ``mapping.toml`` of each style (what docs/data.md shows: orders, members,
campaign log); ``examples/mappings/{cn,us}.toml`` are the tutorial's, which also read the order lines as
interactions and the product list as the catalogue.
"""

from __future__ import annotations

import argparse
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fedinsight.data.synth import SynthConfig, generate_partner_frames

CN_MAPPING = """\
timezone = "Asia/Shanghai"
currency = "CNY"

[tables.transactions]
files = ["订单明细_*.csv"]
group_by = "订单编号"
timestamp_format = "%Y/%m/%d %H:%M:%S"

[tables.transactions.columns]
transaction_id = "订单编号"
customer_id = "会员手机号"
timestamp = "下单时间"
amount = "实付金额"
quantity = "数量"
category = "品类"
channel = "渠道"

[tables.customers]
files = ["会员信息.csv"]
timestamp_format = "%Y/%m/%d"

[tables.customers.columns]
customer_id = "会员手机号"
consent = "是否同意营销"
age = "年龄"
gender = "性别"
region = "城市"
signup_date = "注册日期"

[tables.customers.values.consent]
"是" = true
"否" = false

[tables.events]
files = ["营销活动日志.csv"]

[tables.events.columns]
customer_id = "会员手机号"
timestamp = "事件时间"
campaign = "活动名称"
channel = "渠道"
arm = "实验组"
stage = "事件类型"

[tables.events.values.stage]
"曝光" = "exposure"
"点击" = "click"
"参与" = "participate"
"转化" = "convert"
"""

US_MAPPING = """\
timezone = "America/New_York"
currency = "USD"

[tables.transactions]
files = ["orders_export.csv"]
group_by = "Name"
timestamp_format = "%Y-%m-%d %H:%M:%S %z"

[tables.transactions.columns]
customer_id = "Email"
timestamp = "Created at"
amount = "Total"
quantity = "Lineitem quantity"
channel = "Source"

[tables.customers]
files = ["customers_export.csv"]

[tables.customers.columns]
customer_id = "Email"
consent = "Accepts Email Marketing"
region = "Default Address Province Code"
zip_code = "Default Address Zip"

[tables.events]
files = ["campaign_log.csv"]
timestamp_format = "%m/%d/%Y %H:%M"

[tables.events.columns]
customer_id = "Email"
timestamp = "Timestamp"
campaign = "Campaign Name"
channel = "Channel"
arm = "Variant"
stage = "Event"

[tables.events.values.stage]
impression = "exposure"
click = "click"
add_to_cart = "participate"
conversion = "convert"
"""

MAPPINGS = {"cn": CN_MAPPING, "us": US_MAPPING}

CN_CHANNELS = {"store": "门店", "app": "APP", "web": "微信小程序"}
CN_CATEGORIES = {"home": "家居", "electronics": "数码", "grocery": "食品", "apparel": "服饰", "beauty": "美妆",
                 "sports": "运动"}
CN_EVENT_CHANNELS = {"social": "微信", "email": "邮件", "sms": "短信", "search": "搜索", "app_push": "APP推送"}
CN_CAMPAIGNS = {"campaign-1": "618大促", "campaign-2": "双11预热"}
CN_STAGES = {"exposure": "曝光", "click": "点击", "participate": "参与", "convert": "转化"}
CN_CITIES = {"southwest": "成都", "northeast": "沈阳", "west": "西安", "south": "广州", "central": "武汉",
             "north": "北京", "coastal": "上海", "east": "杭州"}
CN_GENDERS = {"M": "男", "F": "女", "X": "未知"}
CN_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
CN_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂"
US_STAGES = {"exposure": "impression", "click": "click", "participate": "add_to_cart", "convert": "conversion"}
US_SOURCES = {"store": "pos", "app": "android", "web": "web"}
US_STATES = {"southwest": "AZ", "northeast": "NY", "west": "CA", "south": "TX", "central": "IL", "north": "MN",
             "coastal": "FL", "east": "MA"}
CN_ZONE = "Asia/Shanghai"
US_ZONE = "America/New_York"


@dataclass
class Export:
    """A partner folder of raw exports and what reading it through its mapping must give."""

    folder: Path
    style: str
    expected: dict[str, pd.DataFrame]  # canonical columns only, naive UTC, one row per order
    opted_out: list[str]  # raw customer ids (as in the files) of customers who refused marketing
    files: dict[str, list[str]] = field(default_factory=dict)  # table -> file names

    @property
    def mapping_path(self) -> Path:
        return self.folder / "mapping.toml"


def _canonical(customers: int, seed: int) -> dict[str, pd.DataFrame]:
    frames, _truth = generate_partner_frames(SynthConfig(customers=customers, partners=1, seed=seed))
    return {k: v.copy() for k, v in next(iter(frames.values())).items()}


def _local(utc: pd.Series, zone: str) -> pd.Series:
    return utc.dt.tz_localize("UTC").dt.tz_convert(zone)


def _split(total: int, parts: int, rng: np.random.Generator) -> list[int]:
    """``total`` split into ``parts`` non-negative integers (amounts in cents, quantities)."""
    if parts == 1:
        return [total]
    cuts = np.sort(rng.integers(0, total + 1, size=parts - 1))
    return list(np.diff(np.concatenate([[0], cuts, [total]])).astype(int))


def _lines(tx: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Each transaction as 1-3 order lines: cents and quantity split, the first line carrying its category."""
    rows = []
    for t in tx.itertuples(index=False):
        n = int(min(rng.integers(1, 4), max(int(t.quantity), 1)))
        cents = _split(int(round(t.amount * 100)), n, rng)
        qty = _split(int(t.quantity) - n, n, rng) if int(t.quantity) >= n else [int(t.quantity)] + [0] * (n - 1)
        qty = [q + (1 if int(t.quantity) >= n else 0) for q in qty]
        for i in range(n):
            category = t.category if i == 0 else str(rng.choice(sorted(CN_CATEGORIES)))
            rows.append({"transaction_id": t.transaction_id, "customer_id": t.customer_id, "timestamp": t.timestamp,
                         "cents": cents[i], "quantity": qty[i], "line": i, "category": category,
                         "channel": t.channel, "sku": _sku(str(t.customer_id), category, i, rng)})
    return pd.DataFrame(rows)


SKU_CODES = {"home": "HM", "electronics": "EL", "grocery": "GR", "apparel": "AP", "beauty": "BT", "sports": "SP"}
SKUS_PER_CATEGORY = 40


def _sku(customer: str, category: str, line: int, rng: np.random.Generator) -> str:
    """A SKU of the line's category near the customer's own taste (a few SKUs per customer), distinct per order."""
    taste = zlib.crc32(customer.encode()) % SKUS_PER_CATEGORY
    index = (taste + int(rng.integers(0, 4)) + 5 * line) % SKUS_PER_CATEGORY
    return f"{SKU_CODES.get(category, 'XX')}{index + 1:03d}"


def _catalogue() -> pd.DataFrame:
    """Every SKU: its category and a price level."""
    rows = [{"sku": f"{code}{i + 1:03d}", "category": category, "number": i + 1, "price": 9.9 + 10 * (i % 7)}
            for category, code in SKU_CODES.items() for i in range(SKUS_PER_CATEGORY)]
    return pd.DataFrame(rows)


def _avoid_fold(utc: pd.Series, zone: str) -> pd.Series:
    """Move times whose local wall-clock reading is ambiguous (the repeated hour in autumn) two hours later."""
    local = _local(utc, zone).dt.tz_localize(None)
    again = local.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    return utc.where(again.notna(), utc + pd.Timedelta(hours=2))


def write_cn_export(folder: Path, *, customers: int = 300, seed: int = 1, encoding: str = "gb18030",
                    mapping: bool = True, catalogue: bool = False) -> Export:
    """The Chinese retailer's exports (see the module docstring) in ``folder``."""
    rng = np.random.default_rng(seed)
    tables = _canonical(customers, seed)
    cust, tx, ev = tables["customers"], tables["transactions"], tables["events"]
    phones = {c: f"138{i:08d}" for i, c in enumerate(cust["customer_id"])}
    for frame in (cust, tx, ev):
        frame["customer_id"] = frame["customer_id"].map(phones)
    tx["transaction_id"] = [f"DD{t[1:]}" for t in tx["transaction_id"]]
    folder.mkdir(parents=True, exist_ok=True)

    lines = _lines(tx, rng)
    local = _local(lines["timestamp"], CN_ZONE)
    out = pd.DataFrame({
        "订单编号": lines["transaction_id"], "会员手机号": lines["customer_id"],
        "邮箱": [f"member{p[-6:]}@example.cn" for p in lines["customer_id"]],
        "下单时间": local.dt.strftime("%Y/%m/%d %H:%M:%S"), "商品编码": lines["sku"],
        "品类": lines["category"].map(CN_CATEGORIES), "实付金额": [f"¥{c / 100:,.2f}" for c in lines["cents"]],
        "数量": lines["quantity"], "渠道": lines["channel"].map(CN_CHANNELS)})
    first_year = lines.groupby("transaction_id", sort=False)["timestamp"].transform("min").dt.year.to_numpy()
    files = []
    for year in sorted(set(first_year)):
        name = f"订单明细_{year}.csv"
        out[first_year == year].to_csv(folder / name, index=False, encoding=encoding)
        files.append(name)

    signup_local = _local(cust["signup_date"], CN_ZONE)
    consent = cust["consent"].astype(bool)
    names = [CN_SURNAMES[int(rng.integers(len(CN_SURNAMES)))] + "".join(
        CN_GIVEN[int(rng.integers(len(CN_GIVEN)))] for _ in range(int(rng.integers(1, 3)))) for _ in range(len(cust))]
    pd.DataFrame({
        "会员手机号": cust["customer_id"], "姓名": names, "性别": cust["gender"].map(CN_GENDERS), "年龄": cust["age"],
        "城市": cust["region"].map(CN_CITIES), "注册日期": signup_local.dt.strftime("%Y/%m/%d"),
        "是否同意营销": np.where(consent, "是", "否"),
    }).to_csv(folder / "会员信息.csv", index=False, encoding=encoding)

    ev_local = _local(ev["timestamp"], CN_ZONE)
    pd.DataFrame({
        "会员手机号": ev["customer_id"], "活动名称": ev["campaign"].map(CN_CAMPAIGNS),
        "渠道": ev["channel"].map(CN_EVENT_CHANNELS), "实验组": ev["arm"], "事件类型": ev["stage"].map(CN_STAGES),
        "事件时间": ev_local.dt.strftime("%Y-%m-%d %H:%M:%S"),
    }).to_csv(folder / "营销活动日志.csv", index=False, encoding=encoding)
    if catalogue:
        items = _catalogue()
        pd.DataFrame({"商品编码": items["sku"], "商品名称": [f"{CN_CATEGORIES[c]}精选{n:02d}号" for c, n in
                                                      zip(items["category"], items["number"], strict=True)],
                      "品类": items["category"].map(CN_CATEGORIES), "售价": items["price"].map("¥{:.2f}".format),
                      }).to_csv(folder / "商品资料.csv", index=False, encoding=encoding)

    signup_day = signup_local.dt.tz_localize(None).dt.normalize().dt.tz_localize(CN_ZONE)
    expected = {
        "transactions": pd.DataFrame({
            "transaction_id": tx["transaction_id"], "customer_id": tx["customer_id"], "timestamp": tx["timestamp"],
            "amount": tx["amount"], "quantity": tx["quantity"], "category": tx["category"].map(CN_CATEGORIES),
            "channel": tx["channel"].map(CN_CHANNELS)}),
        "customers": pd.DataFrame({
            "customer_id": cust["customer_id"], "consent": consent, "age": cust["age"],
            "gender": cust["gender"].map(CN_GENDERS), "region": cust["region"].map(CN_CITIES),
            "signup_date": signup_day.dt.tz_convert("UTC").dt.tz_localize(None)}),
        "events": pd.DataFrame({
            "customer_id": ev["customer_id"], "timestamp": ev["timestamp"],
            "campaign": ev["campaign"].map(CN_CAMPAIGNS), "channel": ev["channel"].map(CN_EVENT_CHANNELS),
            "stage": ev["stage"], "arm": ev["arm"]}),
    }
    if mapping:
        (folder / "mapping.toml").write_text(CN_MAPPING, encoding="utf-8")
    return Export(folder, "cn", expected, list(cust.loc[~consent, "customer_id"]),
                  {"transactions": files, "customers": ["会员信息.csv"], "events": ["营销活动日志.csv"]})


def write_us_export(folder: Path, *, customers: int = 300, seed: int = 2, mapping: bool = True,
                    catalogue: bool = False) -> Export:
    """The US shop's Shopify-style exports (see the module docstring) in ``folder``."""
    rng = np.random.default_rng(seed)
    tables = _canonical(customers, seed)
    cust, tx, ev = tables["customers"], tables["transactions"], tables["events"]
    emails = dict(zip(cust["customer_id"], cust["email"].str.lower(), strict=True))
    for frame in (cust, tx, ev):
        frame["customer_id"] = frame["customer_id"].map(emails)
    tx["transaction_id"] = [f"#{1000 + i}" for i in range(len(tx))]
    folder.mkdir(parents=True, exist_ok=True)

    lines = _lines(tx, rng)
    first = lines["line"].eq(0)
    created = _local(lines["timestamp"], US_ZONE).dt.strftime("%Y-%m-%d %H:%M:%S %z")
    totals = lines["transaction_id"].map(dict(zip(tx["transaction_id"], tx["amount"], strict=True)))
    names = dict(zip(cust["customer_id"], cust["name"], strict=True))
    pd.DataFrame({
        "Name": lines["transaction_id"], "Email": lines["customer_id"],
        "Financial Status": np.where(first, "paid", ""), "Created at": created, "Currency": "USD",
        "Total": [f"${t:,.2f}" if f else "" for t, f in zip(totals, first, strict=True)],
        "Lineitem quantity": lines["quantity"], "Lineitem name": [f"Product {s}" for s in lines["sku"]],
        "Lineitem sku": lines["sku"], "Source": np.where(first, lines["channel"].map(US_SOURCES), ""),
        "Billing Name": np.where(first, lines["customer_id"].map(names), ""),
    }).to_csv(folder / "orders_export.csv", index=False)

    consent = cust["consent"].astype(bool)
    first_names = cust["name"].str.split().str[0]
    last_names = cust["name"].str.split().str[-1]
    zips = [f"{int(z):05d}" for z in rng.integers(1000, 99999, size=len(cust))]
    pd.DataFrame({
        "Customer ID": [str(7_000_000_000_000 + i * 37) for i in range(len(cust))], "First Name": first_names,
        "Last Name": last_names, "Email": cust["customer_id"],
        "Accepts Email Marketing": np.where(consent, "yes", "no"),
        "Default Address City": "Springfield", "Default Address Province Code": cust["region"].map(US_STATES),
        "Default Address Zip": zips, "Phone": cust["phone"], "Total Spent": "$0.00", "Total Orders": 0, "Tags": "",
    }).to_csv(folder / "customers_export.csv", index=False)

    ev["timestamp"] = _avoid_fold(ev["timestamp"].dt.floor("min"), US_ZONE)
    pd.DataFrame({
        "Email": ev["customer_id"], "Campaign Name": ev["campaign"].str.replace("campaign-", "Spring Promo "),
        "Channel": ev["channel"], "Variant": ev["arm"], "Event": ev["stage"].map(US_STAGES),
        "Timestamp": _local(ev["timestamp"], US_ZONE).dt.strftime("%m/%d/%Y %H:%M"),
    }).to_csv(folder / "campaign_log.csv", index=False)
    if catalogue:
        items = _catalogue()
        pd.DataFrame({"Handle": [f"{c}-{n:02d}" for c, n in zip(items["category"], items["number"], strict=True)],
                      "Title": [f"{c.title()} pick #{n}" for c, n in zip(items["category"], items["number"],
                                                                         strict=True)],
                      "Type": items["category"].str.title(), "Variant SKU": items["sku"],
                      "Variant Price": items["price"].map("{:.2f}".format)}).to_csv(
            folder / "products_export.csv", index=False)

    expected = {
        "transactions": pd.DataFrame({
            "transaction_id": tx["transaction_id"], "customer_id": tx["customer_id"], "timestamp": tx["timestamp"],
            "amount": tx["amount"], "quantity": tx["quantity"], "channel": tx["channel"].map(US_SOURCES)}),
        "customers": pd.DataFrame({
            "customer_id": cust["customer_id"], "consent": consent, "region": cust["region"].map(US_STATES),
            "zip_code": zips}),
        "events": pd.DataFrame({
            "customer_id": ev["customer_id"], "timestamp": ev["timestamp"],
            "campaign": ev["campaign"].str.replace("campaign-", "Spring Promo "), "channel": ev["channel"],
            "stage": ev["stage"], "arm": ev["arm"]}),
    }
    if mapping:
        (folder / "mapping.toml").write_text(US_MAPPING, encoding="utf-8")
    return Export(folder, "us", expected, list(cust.loc[~consent, "customer_id"]),
                  {"transactions": ["orders_export.csv"], "customers": ["customers_export.csv"],
                   "events": ["campaign_log.csv"]})


def write_raw_federation(root: Path, *, customers: int = 300, mapping: bool = True) -> dict[str, Export]:
    """Two partners of raw exports under names nobody here chose: ``华东零售 (GB18030)`` and ``us shop``."""
    return {"华东零售 (GB18030)": write_cn_export(root / "华东零售 (GB18030)", customers=customers, mapping=mapping),
            "us shop": write_us_export(root / "us shop", customers=customers, mapping=mapping)}


TUTORIAL_FOLDERS = {"cn": "华东零售", "us": "us-shop"}


def main(argv: list[str] | None = None) -> None:
    """``python examples/own_exports.py OUT``: the tutorial's two partners' raw exports (no mapping files)."""
    parser = argparse.ArgumentParser(description="Write a Chinese retailer's and a US shop's raw exports.")
    parser.add_argument("out", type=Path, help="folder for the two partner folders")
    parser.add_argument("--customers", type=int, default=2000, help="customers per partner")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty")
    cn = write_cn_export(args.out / TUTORIAL_FOLDERS["cn"], customers=args.customers, seed=args.seed,
                         mapping=False, catalogue=True)
    us = write_us_export(args.out / TUTORIAL_FOLDERS["us"], customers=args.customers, seed=args.seed + 1,
                         mapping=False, catalogue=True)
    for export in (cn, us):
        files = sorted(p.name for p in export.folder.iterdir())
        print(f"{export.folder}: {', '.join(files)}")


if __name__ == "__main__":
    main()

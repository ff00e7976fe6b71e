"""What partners call the canonical columns and values: the vocabulary behind draft mappings and hints.

Exports name the same facts differently (``订单编号``, ``Order ID``, Shopify's ``Name``; ``曝光``,
``impression``). :func:`fedinsight.data.suggest.suggest_mapping` drafts a ``mapping.toml`` from these lists,
and the mapped reader names a likely source column when a required one is not mapped. Headers are compared
after :func:`normalize` (case, width, spaces and punctuation ignored), so ``Created at``, ``created_at`` and
``CREATED-AT`` are one name.
"""

from __future__ import annotations

import re
import unicodedata

HEADERS: dict[str, tuple[str, ...]] = {
    # canonical column: names seen in exports, best first (Chinese and English)
    "transaction_id": ("订单编号", "订单号", "订单id", "订单编码", "交易编号", "交易单号", "流水号", "orderid",
                       "ordernumber", "orderno", "order", "transactionid", "txnid", "receiptno", "invoiceno"),
    "customer_id": ("会员编号", "会员id", "会员号", "会员卡号", "客户编号", "客户id", "用户id", "用户编号",
                    "customerid", "customerno", "customer", "memberid", "userid", "clientid", "buyerid", "accountid"),
    "timestamp": ("下单时间", "订单时间", "支付时间", "付款时间", "交易时间", "事件时间", "发生时间", "行为时间",
                  "时间", "日期", "创建时间", "createdat", "orderdate", "paidat", "eventtime", "occurredat",
                  "timestamp",
                  "datetime", "date", "time", "created"),
    "amount": ("实付金额", "实收金额", "支付金额", "付款金额", "订单金额", "成交金额", "金额", "total", "ordertotal",
               "totalprice", "amount", "amountpaid", "revenue", "sales", "grandtotal", "paid"),
    "quantity": ("数量", "购买数量", "商品数量", "件数", "lineitemquantity", "quantity", "qty", "units", "count"),
    "category": ("品类", "类目", "商品类目", "商品品类", "分类", "商品分类", "category", "producttype",
                 "productcategory", "department"),
    "channel": ("渠道", "下单渠道", "销售渠道", "来源", "平台", "触达渠道", "channel", "saleschannel", "source",
                "platform", "medium"),
    "consent": ("是否同意营销", "同意营销", "营销同意", "是否接收营销", "营销授权", "acceptsemailmarketing",
                "acceptsmarketing", "marketingconsent", "consent", "optin", "optedin", "subscribed"),
    "age": ("年龄", "age"),
    "gender": ("性别", "gender", "sex"),
    "region": ("城市", "所在城市", "地区", "区域", "省份", "region", "defaultaddresscity", "city", "province", "state"),
    "zip_code": ("邮编", "邮政编码", "defaultaddresszip", "zipcode", "zip", "postalcode", "postcode"),
    "occupation": ("职业", "occupation", "job"),
    "signup_date": ("注册时间", "注册日期", "入会时间", "入会日期", "开卡日期", "signupdate", "registrationdate",
                    "joinedat", "joined", "createdat", "membersince"),
    "campaign": ("活动名称", "活动", "活动编号", "营销活动", "campaignname", "campaign", "campaignid"),
    "arm": ("实验组", "分组", "组别", "实验分组", "arm", "variant", "abgroup", "testgroup", "group", "treatment"),
    "stage": ("事件类型", "行为类型", "事件", "行为", "stage", "eventtype", "event", "action", "type"),
    "event_id": ("事件编号", "事件id", "eventid"),
    "item_id": ("商品编码", "商品编号", "商品id", "货号", "sku", "lineitemsku", "itemid", "productid"),
    "title": ("商品名称", "名称", "lineitemname", "productname", "itemname", "title"),
    "price": ("单价", "价格", "lineitemprice", "unitprice", "price"),
    "rating": ("评分", "打分", "rating", "score", "stars"),
    "year": ("年份", "year"),
    "genres": ("类型", "genres", "genre", "tags"),
}

IDENTIFIER_HEADERS: dict[str, tuple[str, ...]] = {
    # columns that identify a person and can serve as customer_id when no customer number exists
    "phone": ("会员手机号", "手机号", "手机号码", "手机", "电话", "联系电话", "phone", "mobile", "cellphone", "tel"),
    "email": ("邮箱", "电子邮箱", "email", "emailaddress", "mail"),
}

STAGES: dict[str, tuple[str, ...]] = {
    # funnel stage: what exports call it (compared after normalize)
    "exposure": ("曝光", "展示", "展现", "触达", "推送", "送达", "exposure", "exposed", "impression", "impressions",
                 "view", "viewed", "shown", "sent", "delivered", "served"),
    "click": ("点击", "click", "clicked", "clicks", "tap", "tapped"),
    "participate": ("参与", "报名", "领券", "领取", "加购", "participate", "participated", "join", "joined", "signup",
                    "addtocart", "engage", "engaged", "engagement"),
    "convert": ("转化", "购买", "下单", "成交", "支付", "convert", "converted", "conversion", "conversions",
                "purchase", "purchased", "order", "ordered"),
}

CONSENT_VALUES: dict[str, bool] = {
    "是": True, "否": False, "同意": True, "不同意": False, "已同意": True, "未同意": False, "允许": True,
    "拒绝": False,
    "yes": True, "no": False, "y": True, "n": False, "true": True, "false": False, "1": True, "0": False,
    "optedin": True, "optedout": False, "subscribed": True, "unsubscribed": False, "accepted": True,
    "declined": False,
}

CURRENCY_SYMBOLS: dict[str, str] = {
    # a symbol or code in amounts -> ISO 4217; ambiguous symbols map to their most common currency
    "¥": "CNY", "￥": "CNY", "元": "CNY", "RMB": "CNY", "CNY": "CNY", "$": "USD", "US$": "USD", "USD": "USD",
    "HK$": "HKD", "HKD": "HKD", "NT$": "TWD", "€": "EUR", "EUR": "EUR", "£": "GBP", "GBP": "GBP", "₩": "KRW",
    "₹": "INR", "円": "JPY", "JPY": "JPY", "S$": "SGD", "A$": "AUD", "C$": "CAD", "R$": "BRL", "₽": "RUB",
    "฿": "THB", "₫": "VND", "₺": "TRY", "CHF": "CHF",
}
AMBIGUOUS_SYMBOLS: dict[str, str] = {
    "¥": "also the Japanese yen (JPY)", "￥": "also the Japanese yen (JPY)",
    "$": "also CAD, AUD, HKD, SGD, MXN ...",
}


def normalize(name: str) -> str:
    """A header as compared: NFKC (full-width -> ASCII), lower case, no spaces or punctuation."""
    text = unicodedata.normalize("NFKC", str(name)).lower()
    return re.sub(r"[\s_\-./:()（）\[\]#]+", "", text)


def header_score(canonical: str, header: str) -> float:
    """How well ``header`` names ``canonical``: 1 for a listed name (earlier is better), less for a listed name
    inside a longer header, 0 when unrelated."""
    names = [normalize(n) for n in HEADERS.get(canonical, ())]
    h = normalize(header)
    if not h:
        return 0.0
    if h in names:
        return 1.0 - names.index(h) / (10 * len(names))
    for i, n in enumerate(names):
        if len(n) >= 3 and n in h:
            return 0.6 - i / (10 * len(names))
    return 0.0


def identifier_kind(header: str) -> str | None:
    """``phone`` or ``email`` when a header names one (a person's identifier)."""
    h = normalize(header)
    for kind, names in IDENTIFIER_HEADERS.items():
        if any(normalize(n) == h or (len(normalize(n)) >= 4 and normalize(n) in h) for n in names):
            return kind
    return None


def best_header(canonical: str, headers: list[str]) -> str | None:
    """The header most likely to hold ``canonical`` (for hints), or None."""
    scored = sorted(((header_score(canonical, h), h) for h in headers), key=lambda t: -t[0])
    return scored[0][1] if scored and scored[0][0] > 0 else None


def stage_of(value: str) -> str | None:
    v = normalize(value)
    for stage, names in STAGES.items():
        if v in (normalize(n) for n in names):
            return stage
    return None


def consent_of(value: str) -> bool | None:
    return CONSENT_VALUES.get(normalize(value))

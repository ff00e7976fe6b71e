"""What a column's *name* says it holds: an identifier kind, or a thing that is not a person.

Names are read in English-like spellings (``mobileNo``, ``e_mail``, ``Customer ID``) and in Chinese (``手机号``,
``会员ID``, ``客户编号``), because partners export their tables from their own systems with their own headers.

Two rules matter beyond "the name contains phone":

- a column named like a **customer identifier** (``customer_id``, ``Customer ID``, ``member id``, ``会员ID``,
  ``客户编号``) is an identifier of its own kind, whatever its values look like (member numbers are often
  11-digit runs that would otherwise pass for phone numbers);
- a column named like a **product or other thing** (``Lineitem name``, ``product``, ``title``, ``商品名称``) is not
  a person's name, whatever its values look like (product titles are capitalised words).
"""

from __future__ import annotations

import re

_NAME_TOKENS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    # kind: (whole tokens, substrings of the compacted name)
    "email": (frozenset({"email", "mail", "emailaddress"}), ("email",)),
    "ip": (frozenset({"ip", "ipv4", "ipv6", "ipaddr", "ipaddress"}), ("ipaddress", "remoteaddr")),
    "national_id": (
        frozenset({"ssn", "sin", "nin", "nino", "nric", "passport", "hkid"}),
        ("nationalid", "idcard", "idnumber", "identitynumber", "taxid", "socialsecurity", "residentid",
         "citizenid", "personalid", "passportno"),
    ),
    "phone": (
        frozenset({"phone", "mobile", "tel", "telephone", "cell", "cellphone", "msisdn", "fax", "whatsapp"}),
        ("phone", "mobileno", "mobilenumber", "telno"),
    ),
    "address": (frozenset({"address", "addr", "street", "address1", "address2"}), ("streetaddress", "addressline")),
    "name": (
        frozenset({"name", "surname", "firstname", "lastname", "fullname", "forename", "username", "nickname"}),
        ("firstname", "lastname", "fullname", "givenname", "familyname", "middlename", "customername",
         "contactname", "personname", "membername", "accountholder"),
    ),
}
_CHINESE: dict[str, re.Pattern[str]] = {  # searched in the raw column name (simplified and traditional)
    "customer_id": re.compile(r"(?:会员|會員|客户|客戶|顾客|顧客|用户|用戶|买家|買家|客人|消费者|消費者|持卡人)\s*"
                              r"(?:id|编号|編號|编码|編碼|号码|號碼|卡号|卡號|代码|代碼|代号|號|号)"
                              r"|账号|帳號|帐号|账户号", re.I),
    "national_id": re.compile(r"身份证|身份證|证件号|證件號|护照|護照"),
    "phone": re.compile(r"手机|手機|电话|電話|联系方式|聯繫方式|座机|微信号"),
    "email": re.compile(r"邮箱|郵箱|电子邮件|電子郵件|邮件地址"),
    "address": re.compile(r"地址|住址"),
    "name": re.compile(r"姓名|名字|联系人|聯繫人|收货人|收貨人|收件人|用户名|用戶名|昵称|暱稱"),
}
_CHINESE_THING = re.compile(r"商品|产品|產品|品名|货品|貨品|标题|標題|名称|名稱|菜品|菜名|书名|書名|片名|歌名|店名|门店"
                            r"|門店|品牌|类目|類目|品类|品類|渠道|活动|活動")

WHO = frozenset({"customer", "cust", "client", "member", "membership", "user", "account", "acct", "buyer", "shopper",
                 "consumer", "subscriber", "patron", "guest", "loyalty", "cardholder"})
ID = frozenset({"id", "no", "nr", "num", "number", "code", "key", "ref", "uid", "guid", "uuid"})
_WHO_ID = re.compile("(?:{})(?:{})".format(*("|".join(sorted(words, key=len, reverse=True)) for words in (WHO, ID))))

THINGS = frozenset({"item", "items", "lineitem", "product", "products", "sku", "goods", "title", "article", "variant",
                    "merchandise", "campaign", "channel", "category", "file", "host", "domain", "brand", "store",
                    "shop", "company", "segment", "city", "region", "country", "street", "event", "vendor", "offer",
                    "coupon", "promotion", "collection", "menu", "dish", "book", "movie", "song", "album", "course",
                    "plan", "package", "service", "device", "model", "app", "tag", "label", "colour", "color"})
_THING_SUFFIXES = ("item", "items", "product", "products", "goods", "title")


def tokens(column: str) -> list[str]:
    """``"Lineitem name"`` -> ``["lineitem", "name"]``; ``"mobileNo"`` -> ``["mobile", "no"]`` (Latin letters only)."""
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column)
    return [t for t in re.split(r"[^a-z0-9]+", snake.lower()) if t]


def names_a_thing(column: str) -> bool:
    """Whether the name says the column describes a product or another thing, not a person."""
    if _CHINESE_THING.search(column):
        return True
    return any(t in THINGS or t.endswith(_THING_SUFFIXES) for t in tokens(column))


def names_a_customer_id(column: str) -> bool:
    """``customer_id``, ``Customer ID``, ``member no``, ``customerId``, ``会员ID``, ``客户编号`` ..."""
    if _CHINESE["customer_id"].search(column):
        return True
    words = tokens(column)
    if any(w in WHO for w in words) and any(w in ID for w in words):
        return True
    return any(_WHO_ID.fullmatch(w) for w in words)


def kind_from_column_name(column: str) -> str | None:
    """The kind of identifier a column's *name* suggests, if any (``mobileNo`` -> phone, ``会员ID`` -> customer_id)."""
    if names_a_customer_id(column):
        return "customer_id"
    thing = names_a_thing(column)
    for kind, pattern in _CHINESE.items():
        if kind != "customer_id" and pattern.search(column) and not (kind == "name" and thing):
            return kind
    words = tokens(column)
    compact = "".join(words)
    for kind, (whole, parts) in _NAME_TOKENS.items():
        hit = any(t in whole for t in words) or any(p in compact for p in parts)
        if hit and kind == "name" and thing:
            continue  # item_name, Lineitem name, campaign_name: not a person
        if hit:
            return kind
    return None

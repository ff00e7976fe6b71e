"""Detecting direct identifiers in partner tables, by column name and by values.

Why both: a column called ``mobile`` is a phone number whatever it holds today, and a column called
``contact`` full of ``+86 138 0013 8000`` is one too. The scan runs on every column of every table
before any processing; the protection pipeline then refuses to load when a column that looks like
personal data is not declared in the partner's policy (``drop``, ``tokenize`` or ``keep``).

What is detected: e-mail addresses, IP addresses, national-id-like numbers (US SSN, Chinese resident
id, UK NINO), phone numbers, street addresses and personal names (title-case "Given Family"). Value
checks run on a deterministic sample of distinct values, so a scan costs the same on a million rows
as on ten thousand.

What a finding says: table, column, kind, how it was found and the share of sampled values that
matched, plus a fixed *example pattern* of the kind -- never a value from the data, so findings can be
printed, logged and sent to a coordinator without leaking anything.

Known limits: names are recognised by title case (Latin scripts) or by column name only; the
``items`` catalogue is public data and is not checked for names (product titles look like names).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_SAMPLE = 2_000
"""Distinct values inspected per column (a seeded sample when there are more)."""
MAX_VALUE_CHARS = 1_000


@dataclass(frozen=True)
class PiiKind:
    """A kind of direct identifier, with the example shown in messages instead of real values."""

    name: str
    label: str
    example: str
    min_share: float  # share of sampled distinct values that must match for the column to be flagged


KINDS: dict[str, PiiKind] = {
    k.name: k
    for k in (
        PiiKind("email", "an e-mail address", "name@example.com", 0.01),
        PiiKind("ip", "an IP address", "192.0.2.1", 0.01),
        PiiKind("national_id", "a national-id-like number", "123-45-6789 or an 18-digit resident id", 0.01),
        PiiKind("phone", "a phone number", "+1 555-010-0199", 0.2),
        PiiKind("address", "a street address", "12 Main Street", 0.01),
        PiiKind("name", "a person's name", "Given Family", 0.5),
    )
}
"""Checked in this order; the first kind that a column name suggests wins."""

NAME_MIN_MATCHES = 3  # a column with one or two title-case values ("New York") is not a name column


@dataclass(frozen=True)
class PiiFinding:
    """One column that looks like a direct identifier. Holds no data values by construction."""

    table: str
    column: str
    kind: str
    by: str  # "column name" or "values"
    share: float = 1.0  # of sampled distinct values that matched (1.0 for a column-name finding)

    @property
    def where(self) -> str:
        return f"{self.table}.{self.column}"

    def describe(self) -> str:
        kind = KINDS[self.kind]
        how = "its name" if self.by == "column name" else f"{self.share:.0%} of sampled values"
        return f"{self.where} looks like {kind.label} (pattern like '{kind.example}'; judged by {how})"


# --- value patterns -----------------------------------------------------------------------------------

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\d.])")
_NATIONAL_ID = (
    re.compile(r"\d{3}-\d{2}-\d{4}"),  # US SSN
    re.compile(r"[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"),  # CN resident id
    re.compile(r"[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]", re.IGNORECASE),  # UK NINO
)
_PHONE_CHARS = re.compile(r"\+?[\d\s().\-/]+")
_DATE_LIKE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_DECIMAL = re.compile(r"[+-]?\d+\.\d+")
_STREET_WORDS = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|way|court|ct|place|pl|terrace|square|sq|"
    "highway|hwy|parkway|pkwy|close|crescent|strasse|straße|gasse|weg|allee|rue|via|calle|avenida"
)
_ADDRESS = (
    re.compile(rf"^\s*\d+[A-Za-z]?(?:[-/]\d+)?,?\s+(?:[^\W\d_][\w.'\-]*\s+){{0,5}}(?:{_STREET_WORDS})\b", re.I),
    re.compile(rf"^\s*(?:[^\W\d_][\w.'\-]*\s+){{1,4}}(?:{_STREET_WORDS})\.?\s+\d+[A-Za-z]?\b", re.I),  # Hauptstr 5
    re.compile(r"\bp\.?\s?o\.?\s+box\s+\d+", re.I),
    re.compile(r"[\u4e00-\u9fff]{2,}(?:路|街|道|巷|弄)\d+号"),
)


def _is_email(v: str) -> bool:
    return _EMAIL.search(v) is not None


def _is_ip(v: str) -> bool:
    if _IPV4.search(v):
        return True
    if ":" in v and len(v) <= 45:
        try:
            return isinstance(ipaddress.ip_address(v.strip()), ipaddress.IPv6Address)
        except ValueError:
            return False
    return False


def _is_national_id(v: str) -> bool:
    s = v.strip()
    return any(p.fullmatch(s) for p in _NATIONAL_ID)


def _is_phone(v: str) -> bool:
    s = v.strip()
    if not _PHONE_CHARS.fullmatch(s) or _DATE_LIKE.fullmatch(s) or _DECIMAL.fullmatch(s):
        return False
    digits = sum(c.isdigit() for c in s)
    if not 7 <= digits <= 15:
        return False
    if s.startswith("+") or "(" in s:
        return True
    if re.search(r"\d[\s.\-/]+\d", s):
        return all(len(g) <= 5 for g in re.split(r"[\s.\-/()]+", s) if g) or digits >= 10
    return digits >= 10  # a bare run of 10-15 digits: mobile numbers are stored like this


def _is_address(v: str) -> bool:
    return any(p.search(v) for p in _ADDRESS)


def _is_name(v: str) -> bool:
    words = v.replace(",", " ").split()
    if not 2 <= len(words) <= 4:
        return False
    for w in words:
        core = w.replace("-", "").replace("'", "").replace("’", "").rstrip(".")
        if len(core) < 2 or not core.isalpha() or not w[0].isupper() or core.isupper():
            return False
        if not any(c.islower() for c in core[1:]):
            return False
    return True


_VALUE_CHECKS = {
    "email": _is_email,
    "ip": _is_ip,
    "national_id": _is_national_id,
    "phone": _is_phone,
    "address": _is_address,
    "name": _is_name,
}

# --- column-name patterns ----------------------------------------------------------------------------

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
_NOT_PERSON = frozenset({"item", "product", "campaign", "channel", "category", "file", "host", "domain", "brand",
                         "store", "shop", "company", "segment", "city", "region", "country", "street", "event"})


def _tokens(column: str) -> list[str]:
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column)
    return [t for t in re.split(r"[^a-z0-9]+", snake.lower()) if t]


_CJK_NAME_HINTS: dict[str, tuple[str, ...]] = {
    # Chinese headers have no Latin tokens: 会员手机号, 邮箱, 收货地址, 姓名 (partners' own exports, docs/data.md)
    "email": ("邮箱", "电子邮件", "邮件地址"),
    "ip": ("ip地址",),
    "national_id": ("身份证", "证件号", "护照号"),
    "phone": ("手机", "电话", "联系方式", "座机"),
    "address": ("地址", "住址"),
    "name": ("姓名", "名字", "收货人", "联系人", "收件人"),
}


def kind_from_column_name(column: str) -> str | None:
    """The kind of identifier a column's *name* suggests, if any (``mobileNo`` -> phone, ``会员手机号`` -> phone)."""
    lowered = str(column).lower()
    for kind, hints in _CJK_NAME_HINTS.items():
        if any(h in lowered for h in hints):
            return kind
    tokens = _tokens(column)
    compact = "".join(tokens)
    for kind, (whole, parts) in _NAME_TOKENS.items():
        hit = any(t in whole for t in tokens) or any(p in compact for p in parts)
        if hit and kind == "name" and any(t in _NOT_PERSON for t in tokens):
            continue  # item_name, campaign_name: not a person
        if hit:
            return kind
    return None


_BOOL_LIKE = frozenset({"true", "false", "t", "f", "yes", "no", "y", "n", "0", "1", "<na>", "nan", "none"})


def _distinct_sample(values: pd.Series) -> list[str]:
    present = values.dropna()
    if present.empty:
        return []
    uniques = pd.unique(present.astype(str).to_numpy())
    if len(uniques) > MAX_SAMPLE:
        rng = np.random.default_rng(0)
        uniques = uniques[np.sort(rng.choice(len(uniques), size=MAX_SAMPLE, replace=False))]
    return [u[:MAX_VALUE_CHARS] for u in uniques if u.strip()]


def _checkable(values: pd.Series) -> bool:
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return False
    return not pd.api.types.is_float_dtype(dtype)


def kind_from_values(values: pd.Series, *, kinds: tuple[str, ...] = tuple(KINDS)) -> tuple[str, float] | None:
    """The identifier kind most of a column's sampled distinct values match, with that share; else None."""
    if not _checkable(values):
        return None
    sample = _distinct_sample(values)
    if not sample:
        return None
    if pd.api.types.is_integer_dtype(values.dtype):
        kinds = tuple(k for k in kinds if k in ("phone", "national_id"))
    best: tuple[str, float] | None = None
    for kind in kinds:
        check = _VALUE_CHECKS[kind]
        matched = sum(1 for v in sample if check(v))
        share = matched / len(sample)
        if matched == 0 or share < KINDS[kind].min_share:
            continue
        if kind == "name" and matched < NAME_MIN_MATCHES:
            continue
        if best is None or share > best[1]:
            best = (kind, share)
    return best


def scan_table(table: str, frame: pd.DataFrame, *, schema_columns: Collection[str] = ()) -> list[PiiFinding]:
    """Findings for every column of one table. ``schema_columns`` (the canonical columns of this table, whose
    names say what they hold) are judged by their values only."""
    canonical = set(schema_columns)
    kinds = tuple(k for k in KINDS if not (table == "items" and k == "name"))
    findings: list[PiiFinding] = []
    for column in frame.columns:
        values = frame[column]
        by_name = None if column in canonical else kind_from_column_name(str(column))
        if by_name is not None and not (table == "items" and by_name == "name"):
            sample = _distinct_sample(values) if _checkable(values) else []
            if _checkable(values) and not set(s.lower() for s in sample) <= _BOOL_LIKE:
                findings.append(PiiFinding(table, str(column), by_name, "column name"))
                continue
        by_values = kind_from_values(values, kinds=kinds)
        if by_values is not None:
            findings.append(PiiFinding(table, str(column), by_values[0], "values", round(by_values[1], 4)))
    return findings


def scan_tables(tables: Mapping[str, pd.DataFrame], *,
                schema: Mapping[str, Collection[str]] | None = None) -> list[PiiFinding]:
    """Findings for every table of a partner (``PartnerData.tables()``); ``schema``: table -> its canonical
    columns (see :func:`scan_table`)."""
    schema = schema or {}
    return [f for name, frame in tables.items() for f in scan_table(name, frame, schema_columns=schema.get(name, ()))]

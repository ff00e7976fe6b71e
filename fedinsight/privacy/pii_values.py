"""What a single value looks like: the *pattern class* of an identifier it matches, if any.

Each check returns the name of the pattern class that matched (``"cn-mobile"``, ``"e164"`` ...) or ``None``, so a
finding can say *which* pattern the column follows ("CN mobile number (1[3-9] + 9 digits, optional +86)")
without quoting a value -- and without showing a made-up US number for Chinese data.

Phone numbers are recognised by country-aware formats rather than by "many digits", because partners' own
customer numbers are long digit runs too:

- ``cn-mobile``: ``1[3-9]`` + 9 digits, optionally after ``+86`` / ``0086``, grouped or bare;
- ``e164``: ``+`` country code and subscriber number, 8 to 15 digits in all, grouped or bare;
- ``nanp``: US/Canada ``(NPA) NXX-XXXX`` style with separators, optionally after ``+1`` / ``1``;
- ``trunk``: a national number written with its trunk prefix and separators (``010-12345678``,
  ``030-1234567``, ``020 7946 0958``).

A bare run of digits that is not a CN mobile number (``10023456789``, ``2015550123``) is *not* a phone number:
it is more likely an id. A column *named* like a phone is caught by its name whatever it holds.
"""

from __future__ import annotations

import ipaddress
import re

PATTERNS: dict[str, str] = {
    "email": "e-mail address (local-part@domain)",
    "ipv4": "IPv4 address (four numbers 0-255)",
    "ipv6": "IPv6 address",
    "us-ssn": "US SSN (3-2-4 digits)",
    "cn-resident-id": "CN resident id (18 characters: area, birth date, sequence, check digit)",
    "uk-nino": "UK National Insurance number (2 letters, 6 digits, 1 letter)",
    "cn-mobile": "CN mobile number (1[3-9] + 9 digits, optional +86)",
    "e164": "international number (+ country code + subscriber number, 8-15 digits)",
    "nanp": "US/Canada number ((NPA) NXX-XXXX, optional +1)",
    "trunk": "national number with trunk prefix (0 + area code + number)",
    "street": "street address (house number and street)",
    "po-box": "PO box",
    "cn-address": "CN address (…路/街/道 + number 号)",
    "title-case-name": "personal name (2-4 capitalised words)",
}
"""Pattern class -> how a finding describes it (never a value)."""

# --- e-mail, IP, national ids ------------------------------------------------------------------------------

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\d.])")
_NATIONAL_ID = {
    "us-ssn": re.compile(r"\d{3}-\d{2}-\d{4}"),
    "cn-resident-id": re.compile(r"[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"),
    "uk-nino": re.compile(r"[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]", re.IGNORECASE),
}


def email(v: str) -> str | None:
    return "email" if _EMAIL.search(v) else None


def ip(v: str) -> str | None:
    if _IPV4.search(v):
        return "ipv4"
    if ":" in v and len(v) <= 45:
        try:
            return "ipv6" if isinstance(ipaddress.ip_address(v.strip()), ipaddress.IPv6Address) else None
        except ValueError:
            return None
    return None


def national_id(v: str) -> str | None:
    s = v.strip()
    return next((name for name, p in _NATIONAL_ID.items() if p.fullmatch(s)), None)


# --- phone numbers -----------------------------------------------------------------------------------------

_SEP = r"[\s.\-/]"
_CN_MOBILE = re.compile(rf"(?:(?:\+|00)86{_SEP}*)?1[3-9]\d(?:{_SEP}?\d){{8}}")
_E164 = re.compile(rf"\+[1-9](?:{_SEP}?\(?\d\)?){{7,14}}")
_NANP = re.compile(rf"(?:\+?1{_SEP}?)?(?:\(\d{{3}}\){_SEP}?|\d{{3}}{_SEP})\d{{3}}{_SEP}\d{{4}}")
_TRUNK = re.compile(rf"\(?0\d{{1,4}}\)?{_SEP}\d{{2,8}}(?:{_SEP}\d{{2,8}}){{0,2}}")
_DATE_LIKE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def phone(v: str) -> str | None:
    """The phone pattern class ``v`` follows (see the module docstring), most specific first."""
    s = v.strip()
    if not s or _DATE_LIKE.fullmatch(s):
        return None
    digits = sum(c.isdigit() for c in s)
    if _CN_MOBILE.fullmatch(s):
        return "cn-mobile"
    if _E164.fullmatch(s) and 8 <= digits <= 15:
        return "e164"
    if _NANP.fullmatch(s):
        return "nanp"
    if _TRUNK.fullmatch(s) and 9 <= digits <= 12:
        return "trunk"
    return None


# --- addresses and names -----------------------------------------------------------------------------------

_STREET_WORDS = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|way|court|ct|place|pl|terrace|square|sq|"
    "highway|hwy|parkway|pkwy|close|crescent|strasse|straße|gasse|weg|allee|rue|via|calle|avenida"
)
_ADDRESS = {
    "street": (re.compile(rf"^\s*\d+[A-Za-z]?(?:[-/]\d+)?,?\s+(?:[^\W\d_][\w.'\-]*\s+){{0,5}}(?:{_STREET_WORDS})\b",
                          re.I),
               re.compile(rf"^\s*(?:[^\W\d_][\w.'\-]*\s+){{1,4}}(?:{_STREET_WORDS})\.?\s+\d+[A-Za-z]?\b", re.I)),
    "po-box": (re.compile(r"\bp\.?\s?o\.?\s+box\s+\d+", re.I),),
    "cn-address": (re.compile(r"[\u4e00-\u9fff]{2,}(?:路|街|道|巷|弄)\d+号"),),
}


def address(v: str) -> str | None:
    return next((name for name, ps in _ADDRESS.items() if any(p.search(v) for p in ps)), None)


def person_name(v: str) -> str | None:
    """Two to four capitalised alphabetic words ("Given Family", "Mary-Jane Watson")."""
    words = v.replace(",", " ").split()
    if not 2 <= len(words) <= 4:
        return None
    for w in words:
        core = w.replace("-", "").replace("'", "").replace("’", "").rstrip(".")
        if len(core) < 2 or not core.isalpha() or not w[0].isupper() or core.isupper():
            return None
        if not any(c.islower() for c in core[1:]):
            return None
    return "title-case-name"


CHECKS = {"email": email, "ip": ip, "national_id": national_id, "phone": phone, "address": address,
          "name": person_name}
"""Identifier kind -> the check returning the pattern class a value matches."""

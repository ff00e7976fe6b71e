"""What a partner's export files hold, judged from their headers and a sample of values (for draft mappings).

:func:`profile_file` reads a file the way a mapping would (UTF-8 or GB18030, the delimiter sniffed) and
describes each column: whether its values are dates (and in which format, with or without UTC offsets),
amounts (with which currency marks and decimal mark), whole numbers, consent words, funnel stages, A/B arms,
phone numbers or e-mail addresses. :mod:`fedinsight.data.suggest` turns these profiles into a draft
``mapping.toml``. Nothing is written; only the first rows of large files are inspected.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

import pandas as pd

from fedinsight.data.synonyms import CURRENCY_SYMBOLS, consent_of, stage_of
from fedinsight.data.values import decode, parse_number, split_offsets

SAMPLE_ROWS = 50_000
"""Rows read per file to profile it (a draft needs patterns, not every row)."""
DISTINCT = 500

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")
DATE_FORMATS: tuple[str, ...] = (
    "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y.%m.%d %H:%M:%S", "%Y.%m.%d %H:%M", "%Y.%m.%d",
    "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y",
    "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y", "%d-%m-%Y %H:%M:%S", "%d-%m-%Y", "%Y%m%d%H%M%S", "%Y%m%d",
)
"""Tried in this order on values that are not ISO 8601; month-first before day-first (see ``ambiguous``)."""
PREFERRED_ZONES: tuple[str, ...] = (
    "UTC", "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Tokyo", "Asia/Seoul", "Asia/Singapore",
    "Asia/Kolkata", "Asia/Dubai", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Rome",
    "Europe/Amsterdam", "Europe/Moscow", "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
    "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu", "America/Toronto", "America/Vancouver",
    "America/Mexico_City", "America/Sao_Paulo", "Australia/Sydney", "Australia/Perth", "Pacific/Auckland",
)
_EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[\d\s().\-]{7,20}$")
_ORDER_NUMBER = re.compile(r"^#\d+$")
_CN_MOBILE = re.compile(r"^(?:\+?86[\s-]?)?1[3-9]\d{9}$")
_DATE_START = re.compile(r"^(?:\d{4}[-/.年]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{8}(?:\d{6})?$)")
_ARMS = {"a", "b", "c", "d", "control", "treatment", "test", "holdout", "对照组", "实验组", "对照", "实验", "a组",
         "b组"}


@dataclass
class ColumnProfile:
    """One source column: a sample of its distinct values and what they look like."""

    name: str
    distinct: list[str]  # up to DISTINCT distinct non-empty values, as text
    n_present: int
    n_distinct: int
    unique: bool  # no value repeats (in the rows read)
    date_format: str | None = None  # None with is_date: ISO 8601
    is_date: bool = False
    ambiguous_date: bool = False  # both month-first and day-first read every value
    offsets: list[tuple[datetime, int]] = field(default_factory=list)  # (UTC instant, offset minutes) samples
    is_number: bool = False
    is_int: bool = False
    decimal: str = "."
    currencies: set[str] = field(default_factory=set)  # ISO codes of currency marks seen
    marks: set[str] = field(default_factory=set)  # the marks themselves ($, ¥ ...)
    consent: bool = False  # every value is a consent word (是/否, yes/no ...)
    stage_share: float = 0.0  # share of distinct values that are funnel-stage words
    arm_like: bool = False
    identifier: str | None = None  # "email" or "phone" when the values are
    order_numbers: bool = False  # Shopify-style "#1001"
    repeats: bool = False  # some value occurs on more than one row


@dataclass
class FileProfile:
    path: Path
    encoding: str
    delimiter: str
    rows: int  # rows read (at most SAMPLE_ROWS)
    columns: dict[str, ColumnProfile]
    frame: pd.DataFrame  # the rows read, as text

    @property
    def headers(self) -> list[str]:
        return list(self.columns)


def _delimiter(text: str) -> str:
    head = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_sample(path: Path) -> tuple[pd.DataFrame, str, str] | str:
    """(rows as text, encoding, delimiter) of a CSV or Parquet file, or why it cannot be read."""
    if path.suffix.lower() == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
            return f"not a readable Parquet file ({type(exc).__name__})"
        return frame.head(SAMPLE_ROWS).astype("str").where(frame.head(SAMPLE_ROWS).notna()), "parquet", ""
    decoded = decode(path.read_bytes())
    if decoded.text is None:
        return f"neither UTF-8 nor GB18030 text ({decoded.error})"
    delimiter = _delimiter(decoded.text)
    try:
        frame = pd.read_csv(io.StringIO(decoded.text), dtype=str, sep=delimiter, nrows=SAMPLE_ROWS,
                            skipinitialspace=True)
    except Exception as exc:  # pandas raises several types for malformed CSV
        return f"not a well-formed CSV table ({type(exc).__name__})"
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, decoded.encoding, delimiter


def profile_file(path: Path) -> FileProfile | str:
    """The profile of one export file, or why it cannot be read."""
    sample = read_sample(path)
    if isinstance(sample, str):
        return sample
    frame, encoding, delimiter = sample
    columns = {str(c): profile_column(str(c), frame[c]) for c in frame.columns}
    return FileProfile(path, encoding, delimiter, len(frame), columns, frame)


def profile_column(name: str, values: pd.Series) -> ColumnProfile:
    text = values.astype("str").str.strip()
    text = text[values.notna() & text.ne("")]
    counts = text.value_counts()
    distinct = [str(v) for v in counts.index[:DISTINCT]]
    profile = ColumnProfile(name, distinct, int(len(text)), int(len(counts)), bool((counts <= 1).all()),
                            repeats=bool((counts > 1).any()))
    if not distinct:
        return profile
    lowered = {v.lower() for v in distinct}
    profile.consent = len(counts) <= 6 and all(consent_of(v) is not None for v in distinct)
    profile.stage_share = sum(stage_of(v) is not None for v in distinct) / len(distinct)
    profile.arm_like = len(counts) <= 4 and lowered <= _ARMS
    profile.order_numbers = all(_ORDER_NUMBER.match(v) for v in distinct)
    if all(_EMAIL.match(v) for v in distinct):
        profile.identifier = "email"
    elif all(_is_phone(v) for v in distinct) and not _is_datelike(distinct):
        profile.identifier = "phone"
    _profile_dates(profile)
    if not profile.is_date:
        _profile_numbers(profile)
    return profile


def _is_phone(value: str) -> bool:
    """Written like a phone number: +country code or separators, or a Chinese mobile number (bare digits are ids)."""
    if _CN_MOBILE.match(value):
        return True
    return bool(_PHONE.match(value)) and sum(c.isdigit() for c in value) >= 7 and (
        value.startswith("+") or any(c in value for c in " ()-."))


def _is_datelike(values: list[str]) -> bool:
    return any(_DATE_START.match(v) for v in values[:50])


def _profile_dates(profile: ColumnProfile) -> None:
    values = pd.Series(profile.distinct, dtype="str")
    if not values.str.match(_DATE_START).all():
        return
    base, minutes = split_offsets(values)
    if base.str.fullmatch(ISO_DATE).all():
        fmt = None
    else:
        fits = [f for f in DATE_FORMATS if pd.to_datetime(base, format=f, errors="coerce").notna().all()]
        if not fits:
            return
        fmt = fits[0]
        month_first = {"%m/%d/%Y": "%d/%m/%Y"}
        for m, d in month_first.items():
            if fmt.startswith(m) and fmt.replace(m, d) in fits:
                profile.ambiguous_date = True
    profile.is_date, profile.date_format = True, fmt
    naive = pd.to_datetime(base, format=fmt if fmt else "ISO8601", errors="coerce")
    with_offset = minutes.notna() & naive.notna()
    for local, offset in zip(naive[with_offset][:200], minutes[with_offset][:200], strict=True):
        instant = (local - pd.Timedelta(minutes=float(offset))).to_pydatetime().replace(tzinfo=UTC)
        profile.offsets.append((instant, int(offset)))


def _profile_numbers(profile: ColumnProfile) -> None:
    values = pd.Series(profile.distinct, dtype="str")
    best = None
    for mark in (".", ","):
        parsed = parse_number(values, mark)
        share = float(parsed.notna().mean())
        if best is None or share > best[1]:
            best = (mark, share, parsed)
    assert best is not None
    mark, share, parsed = best
    if share < 0.98:
        return
    profile.is_number, profile.decimal = True, mark
    profile.is_int = bool(((parsed.dropna() % 1) == 0).all()) and not values.str.contains(r"[.,]\d{2}$").any()
    for value in profile.distinct[:200]:
        for symbol, code in CURRENCY_SYMBOLS.items():
            if symbol in value and not (symbol == "$" and any(s in value for s in ("US$", "HK$", "NT$", "S$", "A$",
                                                                                  "C$", "R$"))):
                profile.currencies.add(code)
                profile.marks.add(symbol)


def zones_for_offsets(samples: list[tuple[datetime, int]]) -> list[str]:
    """IANA zones whose UTC offset at each sampled instant is the one written (preferred zones first)."""
    if not samples:
        return []
    distinct = sorted(set(samples))[:200]

    def fits(name: str) -> bool:
        zone = ZoneInfo(name)
        return all(int(instant.astimezone(zone).utcoffset().total_seconds() // 60) == offset  # type: ignore[union-attr]
                   for instant, offset in distinct)

    preferred = [z for z in PREFERRED_ZONES if fits(z)]
    others = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))
                    and z not in PREFERRED_ZONES and fits(z))
    return preferred + others

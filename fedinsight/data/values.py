"""Reading values the way a partner's own exports write them: text encodings, amounts, local timestamps.

Why a module of its own: exports from shop systems, ERPs and spreadsheets write the same facts in many
ways (``$1,204.00``, ``¥1,204.50``, ``1 204,50``; ``2024/01/16 13:32:00`` in Beijing time,
``2024-03-05 14:22:10 -0400``). A partner's mapping (:mod:`fedinsight.data.mapping`) says which way its
files use; these functions turn such values into the canonical ones (floats, naive UTC timestamps) and
return a missing value for anything they cannot read, so the validator can name every offending row.

Nothing here guesses silently where a guess could be wrong: a thousands separator must separate groups of
three digits (``12,50`` is not 1250 when the decimal mark is ``.``), and naive timestamps are read in the
one time zone the partner declared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

AUTO_ENCODINGS: tuple[str, ...] = ("utf-8", "gb18030")
"""Tried in this order when a mapping declares no encoding (UTF-8 with or without BOM, then GB18030/GBK)."""

DECIMAL_MARKS: tuple[str, ...] = (".", ",")


@dataclass(frozen=True)
class DecodedText:
    """A file's text, or why it could not be decoded."""

    text: str | None
    encoding: str  # the encoding used (or the last one tried)
    error: str | None = None


def decode(raw: bytes, encoding: str | None = None) -> DecodedText:
    """Decode a CSV file's bytes with ``encoding``, or UTF-8 then GB18030 when none is given (a BOM is dropped)."""
    tried = (encoding,) if encoding else AUTO_ENCODINGS
    first_error: str | None = None
    for name in tried:
        try:
            text = raw.decode(name)
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            first_error = first_error or f"byte 0x{raw[exc.start]:02x} on line {line}"
            continue
        return DecodedText(text.removeprefix("\ufeff"), name)
    return DecodedText(None, tried[-1], first_error)


# --- numbers and amounts ------------------------------------------------------------------------------------

_CURRENCY_MARK = r"(?:[A-Z]{1,3}\$|[A-Z]{3}|[$¢£¤¥฿₠-₿＄￠￡￥￦]|元|圆|円|块)"  # $ ¥ ￥ € £ USD RMB 元 HK$ ...


def _number_pattern(decimal: str) -> re.Pattern[str]:
    thousands = r"[,'\u00a0\u202f ]" if decimal == "." else r"[.'\u00a0\u202f ]"
    d = re.escape(decimal)
    number = rf"\d{{1,3}}(?:{thousands}\d{{3}})+(?:{d}\d*)?|\d+(?:{d}\d*)?|{d}\d+"
    return re.compile(
        rf"^\s*(?P<open>\()?\s*(?P<sign>[-−+])?\s*(?:{_CURRENCY_MARK})?\s*(?P<sign2>[-−+])?\s*(?P<number>{number})"
        rf"\s*(?:{_CURRENCY_MARK})?\s*(?P<close>\))?\s*$"
    )


_PATTERNS = {mark: _number_pattern(mark) for mark in DECIMAL_MARKS}


def parse_number(values: pd.Series, decimal: str = ".") -> pd.Series:
    """Floats from numbers as exports write them (``$1,204.00``, ``¥1,204.50``, ``1 204,50`` with
    ``decimal=","``, ``(12.50)`` for -12.50); NaN where a value is missing or cannot be read."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(np.nan, index=values.index, dtype="float64")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64")
    text = values.astype("str").str.strip()
    parts = text.str.extract(_PATTERNS[decimal])
    digits = parts["number"].str.replace(r"[^\d" + re.escape(decimal) + "]", "", regex=True)
    if decimal != ".":
        digits = digits.str.replace(decimal, ".", regex=False)
    out = pd.to_numeric(digits, errors="coerce").astype("float64")
    negative = parts["sign"].isin(["-", "−"]) | parts["sign2"].isin(["-", "−"])
    negative |= parts["open"].notna() & parts["close"].notna()
    out = out.where(~negative.to_numpy(), -out)
    unreadable = out.isna() & text.notna()
    if unreadable.any():  # plain numbers the pattern does not cover: 1e5, 12.5e-3
        out = out.where(~unreadable, pd.to_numeric(text.where(unreadable), errors="coerce"))
    return out


def number_hint(decimal: str) -> str:
    example = "1,204.50" if decimal == "." else "1.204,50"
    return f"e.g. {example} or ¥{example} (decimal mark '{decimal}')"


# --- timestamps -----------------------------------------------------------------------------------------

_OFFSET = re.compile(
    r"^(?P<base>.*\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s*[AaPp][Mm])?)\s*"
    r"(?:(?P<utc>Z|UTC|GMT)|(?:UTC|GMT)?(?P<sign>[+-])(?P<hh>\d{2}):?(?P<mm>\d{2})?)$"
)


def strip_zone_directives(fmt: str) -> str:
    """A ``timestamp_format`` without ``%z``/``%Z``: offsets are read separately, row by row."""
    return re.sub(r"\s*%[zZ]", "", fmt).strip()


def split_offsets(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(the timestamps without their UTC offset, each row's offset in minutes or NaN where none is written)."""
    parts = text.str.extract(_OFFSET)
    has_offset = parts["base"].notna()
    base = text.where(~has_offset, parts["base"])
    minutes = parts["hh"].astype("float64") * 60 + parts["mm"].astype("float64").fillna(0.0)
    minutes = minutes.where(parts["sign"] != "-", -minutes)
    minutes = minutes.where(parts["utc"].isna(), 0.0)
    return base, minutes.where(has_offset)


def parse_timestamps(values: pd.Series, fmt: str | None = None, timezone: str = "UTC") -> pd.Series:
    """Naive UTC timestamps (the canonical representation) from an export's timestamps.

    A timestamp that carries its UTC offset (``-0400``, ``+08:00``, ``Z``) is read with it; a naive one is
    local time in ``timezone``. In the repeated hour when clocks go back, a naive time is read as the first
    (daylight-saving) one; a time skipped when clocks go forward is moved forward. NaT where unreadable.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if getattr(values.dt, "tz", None) is not None:
            return values.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
        return _local_to_utc(values.astype("datetime64[us]"), timezone)
    text = values.astype("str").str.strip()
    text = text.where(text.ne("") & values.notna())
    base, minutes = split_offsets(text)
    if fmt:
        naive = pd.to_datetime(base, format=strip_zone_directives(fmt), errors="coerce")
    else:
        naive = pd.to_datetime(base, format="ISO8601", errors="coerce")
    naive = naive.astype("datetime64[us]")
    with_offset = minutes.notna()
    out = _local_to_utc(naive.where(~with_offset), timezone)
    shifted = naive - pd.to_timedelta(minutes.fillna(0.0), unit="min")
    return out.where(~with_offset, shifted).astype("datetime64[us]")


def _local_to_utc(naive: pd.Series, timezone: str) -> pd.Series:
    if timezone == "UTC":
        return naive
    zone = ZoneInfo(timezone)
    local = naive.dt.tz_localize(zone, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward")
    return local.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")


def timestamp_hint(fmt: str | None, timezone: str) -> str:
    shown = f"format {fmt} (timestamp_format)" if fmt else "ISO 8601, e.g. 2024-03-31 14:05, or set timestamp_format"
    return f"expected {shown}; naive times are read as {timezone}"

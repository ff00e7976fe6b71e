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
import pyarrow as pa
import pyarrow.compute as pc

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
_NULL = pa.scalar(None, pa.large_string())


def _number_pattern(decimal: str) -> str:
    thousands = r"[,'\x{00a0}\x{202f} ]" if decimal == "." else r"[.'\x{00a0}\x{202f} ]"
    d = re.escape(decimal)
    return rf"^[-−+]?\s*(?:\d{{1,3}}(?:{thousands}\d{{3}})+(?:{d}\d*)?|\d+(?:{d}\d*)?|{d}\d+)$"


def _strings(values: pd.Series) -> pa.Array:
    """The values as an Arrow string array (missing and empty -> null): Arrow's regex kernels run in C++."""
    text = pc.utf8_trim_whitespace(pa.array(values.astype("str"), from_pandas=True).cast(pa.large_string()))
    return pc.if_else(pc.equal(text, ""), _NULL, text)


def _series(array: pa.Array, index: pd.Index, dtype: str = "float64") -> pd.Series:
    return pd.Series(array.to_numpy(zero_copy_only=False), index=index).astype(dtype)


def parse_number(values: pd.Series, decimal: str = ".") -> pd.Series:
    """Floats from numbers as exports write them (``$1,204.00``, ``¥1,204.50``, ``1 204,50`` with
    ``decimal=","``, ``(12.50)`` for -12.50); NaN where a value is missing or cannot be read."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(np.nan, index=values.index, dtype="float64")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64")
    text = _strings(values)
    brackets = pc.fill_null(pc.match_substring_regex(text, r"^\(.*\)$"), False)
    t = pc.replace_substring_regex(text, r"^\(\s*(.*?)\s*\)$", r"\1")
    t = pc.replace_substring_regex(t, rf"^([-−+]?)\s*{_CURRENCY_MARK}\s*", r"\1")  # $12, -$5, ¥ 12
    t = pc.replace_substring_regex(t, rf"\s*{_CURRENCY_MARK}$", "")  # 12.5 元, 1.204,50 €
    ok = pc.fill_null(pc.match_substring_regex(t, _number_pattern(decimal)), False)
    digits = pc.replace_substring_regex(t, rf"[^\d{re.escape(decimal)}]", "")
    if decimal != ".":
        digits = pc.replace_substring(digits, decimal, ".")
    digits = pc.replace_substring_regex(digits, r"\.$", ".0")
    number = pc.cast(pc.if_else(ok, digits, _NULL), pa.float64())
    negative = pc.xor(pc.fill_null(pc.match_substring_regex(t, r"^[-−]"), False), brackets)
    out = _series(pc.if_else(negative, pc.negate(number), number), values.index)
    unreadable = out.isna() & _series(pc.is_valid(text), values.index, "bool")
    if unreadable.any():  # plain numbers the pattern does not cover: 1e5, 12.5e-3
        plain = pd.to_numeric(values.astype("str").str.strip().where(unreadable), errors="coerce")
        out = out.where(~unreadable, plain)
    return out


def number_hint(decimal: str) -> str:
    example = "1,204.50" if decimal == "." else "1.204,50"
    return f"e.g. {example} or ¥{example} (decimal mark '{decimal}')"


# --- timestamps -----------------------------------------------------------------------------------------

_ZONE = r"(?:Z|UTC|GMT|(?:UTC|GMT)?[+-]\d{2}(?::?\d{2})?)"
_HAS_OFFSET = rf"\d:\d{{2}}(?::\d{{2}}(?:[.,]\d+)?)?(?:\s*[AaPp][Mm])?\s*{_ZONE}$"  # an offset after a time of day


def strip_zone_directives(fmt: str) -> str:
    """A ``timestamp_format`` without ``%z``/``%Z``: offsets are read separately, row by row."""
    return re.sub(r"\s*%[zZ]", "", fmt).strip()


def split_offsets(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(the timestamps without their UTC offset, each row's offset in minutes or NaN where none is written)."""
    values = _strings(text)
    has = pc.fill_null(pc.match_substring_regex(values, _HAS_OFFSET), False)
    if not pc.any(has).as_py():
        return text, pd.Series(np.nan, index=text.index)
    base = pc.if_else(has, pc.replace_substring_regex(values, rf"\s*{_ZONE}$", ""), values)
    zone = pc.replace_substring_regex(values, rf"^.*?\s*({_ZONE})$", r"\1")
    zone = pc.replace_substring(pc.replace_substring_regex(zone, r"^(?:UTC|GMT)", ""), ":", "")
    zone = pc.if_else(pc.or_(pc.invert(has), pc.is_in(zone, pa.array(["", "Z"], pa.large_string()))), "+0000", zone)
    hours = pc.cast(pc.utf8_slice_codeunits(zone, 1, 3), pa.float64(), safe=False)
    minutes = pc.cast(pc.if_else(pc.equal(pc.utf8_length(zone), 5), pc.utf8_slice_codeunits(zone, 3, 5), "0"),
                      pa.float64(), safe=False)
    total = pc.add(pc.multiply(hours, 60.0), minutes)
    total = pc.if_else(pc.starts_with(zone, "-"), pc.negate(total), total)
    offset = pc.if_else(has, total, pa.scalar(None, pa.float64()))
    return (pd.Series(base.to_numpy(zero_copy_only=False), index=text.index, dtype="str"),
            _series(offset, text.index))


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

"""Detecting direct identifiers in partner tables, by column name and by values.

Why both: a column called ``mobile`` is a phone number whatever it holds today, and a column called
``contact`` full of ``+86 138 0013 8000`` is one too. The scan runs on every column of every table
before any processing; the protection pipeline then refuses to load when a column that looks like
personal data is not declared in the partner's policy (``drop``, ``tokenize`` or ``keep``).

What is detected: e-mail addresses, IP addresses, national-id-like numbers (US SSN, Chinese resident
id, UK NINO), phone numbers (country-aware: CN mobile, E.164, US/Canada, national numbers with a trunk
prefix), street addresses, personal names (title-case "Given Family"), and columns *named* like a customer
identifier (``Customer ID``, ``member id``, ``会员ID``, ``客户编号``): :mod:`.pii_values` and :mod:`.pii_columns`.
Value checks run on a deterministic sample of distinct values, so a scan costs the same on a million rows
as on ten thousand.

What a finding says: table, column, kind, how it was found, the share of sampled values that matched and
the *pattern class* they follow ("CN mobile number (1[3-9] + 9 digits, optional +86)") -- never a value from
the data, so findings can be printed, logged and sent to a coordinator without leaking anything.

Not flagged: the key column ``customer_id`` (the pipeline always tokenizes it, and its values are ids even
when they look like phone numbers); bare digit runs that are not CN mobile numbers (ids, not phones);
person names in columns named like a product or another thing (``Lineitem name``, ``title``, ``商品名称``) and
in the ``items`` catalogue, which is public data.

Known limits: names are recognised by title case (Latin scripts) or by column name only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedinsight.privacy.pii_columns import kind_from_column_name, names_a_thing
from fedinsight.privacy.pii_values import CHECKS, PATTERNS

MAX_SAMPLE = 2_000
"""Distinct values inspected per column (a seeded sample when there are more)."""
MAX_VALUE_CHARS = 1_000
KEY_COLUMN = "customer_id"
"""Always tokenized by the protection pipeline: never a finding, whatever its values look like."""


@dataclass(frozen=True)
class PiiKind:
    """A kind of direct identifier."""

    name: str
    label: str
    min_share: float  # share of sampled distinct values that must match for the column to be flagged


KINDS: dict[str, PiiKind] = {
    k.name: k
    for k in (
        PiiKind("customer_id", "a customer identifier", 1.0),  # by column name only
        PiiKind("email", "an e-mail address", 0.01),
        PiiKind("ip", "an IP address", 0.01),
        PiiKind("national_id", "a national-id-like number", 0.01),
        PiiKind("phone", "a phone number", 0.2),
        PiiKind("address", "a street address", 0.01),
        PiiKind("name", "a person's name", 0.5),
    )
}
"""Every kind; the ones with a value check (:data:`~fedinsight.privacy.pii_values.CHECKS`) are also found by values."""

NAME_MIN_MATCHES = 3  # a column with one or two title-case values ("New York") is not a name column


@dataclass(frozen=True)
class PiiFinding:
    """One column that looks like a direct identifier. Holds no data values by construction."""

    table: str
    column: str
    kind: str
    by: str  # "column name" or "values"
    share: float = 1.0  # of sampled distinct values that matched (1.0 for a column-name finding)
    pattern: str = ""  # the pattern class most matched values follow (pii_values.PATTERNS), "" if none did

    @property
    def where(self) -> str:
        return f"{self.table}.{self.column}"

    @property
    def example(self) -> str:
        """What the column looks like, as a pattern class: shown instead of any value."""
        if self.pattern:
            return PATTERNS[self.pattern]
        return f"{KINDS[self.kind].label.split(' ', 1)[1]} (by its column name)"

    def describe(self) -> str:
        how = "its name" if self.by == "column name" else f"{self.share:.0%} of sampled values"
        return f"{self.where} looks like {KINDS[self.kind].label}: {self.example}; judged by {how}"


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


def _matches(sample: list[str], kind: str) -> Counter[str]:
    """How many sampled values follow each pattern class of ``kind``."""
    check = CHECKS[kind]
    return Counter(p for p in (check(v) for v in sample) if p is not None)


def _best(sample: list[str], kinds: tuple[str, ...]) -> tuple[str, float, str] | None:
    best: tuple[str, float, str] | None = None
    for kind in kinds:
        found = _matches(sample, kind)
        matched = sum(found.values())
        share = matched / len(sample)
        if matched == 0 or share < KINDS[kind].min_share:
            continue
        if kind == "name" and matched < NAME_MIN_MATCHES:
            continue
        if best is None or share > best[1]:
            best = (kind, share, found.most_common(1)[0][0])
    return best


def _value_kinds(values: pd.Series, kinds: tuple[str, ...]) -> tuple[str, ...]:
    kinds = tuple(k for k in kinds if k in CHECKS)
    if pd.api.types.is_integer_dtype(values.dtype):
        kinds = tuple(k for k in kinds if k in ("phone", "national_id"))
    return kinds


def kind_from_values(values: pd.Series, *, kinds: tuple[str, ...] = tuple(CHECKS)) -> tuple[str, float] | None:
    """The identifier kind most of a column's sampled distinct values match, with that share; else None."""
    found = pattern_from_values(values, kinds=kinds)
    return None if found is None else (found[0], found[1])


def pattern_from_values(values: pd.Series, *, kinds: tuple[str, ...] = tuple(CHECKS)) -> tuple[str, float, str] | None:
    """:func:`kind_from_values` plus the pattern class most of the matching values follow."""
    if not _checkable(values):
        return None
    sample = _distinct_sample(values)
    return _best(sample, _value_kinds(values, kinds)) if sample else None


def scan_table(table: str, frame: pd.DataFrame, *, schema_columns: Collection[str] = ()) -> list[PiiFinding]:
    """Findings for every column of one table. ``schema_columns`` (the canonical columns of this table, whose
    names say what they hold) are judged by their values only; the key ``customer_id`` is never a finding."""
    canonical = set(schema_columns)
    findings: list[PiiFinding] = []
    for column in map(str, frame.columns):
        if column == KEY_COLUMN:
            continue
        values = frame[column]
        thing = table == "items" or names_a_thing(column)  # product titles are not people
        kinds = tuple(k for k in CHECKS if not (k == "name" and thing))
        by_name = None if column in canonical else kind_from_column_name(column)
        if by_name == "name" and thing:
            by_name = None
        if by_name is not None and _checkable(values):
            sample = _distinct_sample(values)
            if not set(s.lower() for s in sample) <= _BOOL_LIKE:
                found = _matches(sample, by_name) if by_name in CHECKS and sample else Counter()
                pattern = found.most_common(1)[0][0] if found else ""
                findings.append(PiiFinding(table, column, by_name, "column name", pattern=pattern))
                continue
        by_values = pattern_from_values(values, kinds=kinds)
        if by_values is not None:
            kind, share, pattern = by_values
            findings.append(PiiFinding(table, column, kind, "values", round(share, 4), pattern))
    return findings


def scan_tables(tables: Mapping[str, pd.DataFrame], *,
                schema: Mapping[str, Collection[str]] | None = None) -> list[PiiFinding]:
    """Findings for every table of a partner (``PartnerData.tables()``); ``schema``: table -> its canonical
    columns (see :func:`scan_table`)."""
    schema = schema or {}
    return [f for name, frame in tables.items() for f in scan_table(name, frame, schema_columns=schema.get(name, ()))]

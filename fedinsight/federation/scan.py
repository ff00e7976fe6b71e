"""A partner-side scan: one computation over a partner's canonical tables, defined once, run by any engine.

Why SQL text in DuckDB's dialect: it is the language both partner engines speak -- DuckDB runs it as written,
Spark runs it after :mod:`sqlglot` transpiles it (``fedinsight.partner.engine``) -- so a task writes each
computation once, and the same text gives the same numbers on either engine (the equality tests check it).

A scan names the canonical tables it reads (``customers``, ``transactions``, ``interactions``, ``items``,
``events``). The engine hands it those tables already restricted to the customers the task may use (consent for
its purpose, erased customers removed) and without the columns the partner's protection policy drops, so a scan
cannot forget either. A result holding a ``customer_id`` column has it tokenized by the partner's data view
before the task sees it. Results must be small: per customer or aggregated, never row-level.

Writing rules that keep both engines exact: compare timestamps with literals (:func:`timestamp_literal`), sum
money as ``DECIMAL(38, 6)`` (exact and the same whatever the partition order), count days as integers
(``date_diff('day', DATE '1970-01-01', CAST(timestamp AS DATE))``), and leave float maths to pandas on the
small result.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

CANONICAL_TABLES: tuple[str, ...] = ("customers", "transactions", "interactions", "items", "events")
MONEY = "DECIMAL(38, 6)"
"""The type a scan sums money in: exact, so both engines (and any partitioning) give the same sum."""

WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
              "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
"""Every character Python's ``str.strip()`` removes (``str.isspace``): what the pandas path and the tokenizer trim
from ids and labels, so the engine trims the same (a tab or an ideographic space U+3000 after an id is common in
exports from spreadsheets and Chinese-locale tools)."""


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal (quotes doubled), in both engines' dialects. A NUL character is spliced in
    with ``chr(0)``: transpiled for Spark it would become the escape ``\\0``, which Spark reads as an octal escape
    together with the digits after it (``'a\\x0012'`` would be ``'a\\n'``)."""
    quoted = "'" + text.replace("'", "''") + "'"
    return quoted.replace("\x00", "' || chr(0) || '") if "\x00" in text else quoted


def stripped_sql(text: str) -> str:
    """The VARCHAR expression ``text`` without the leading and trailing :data:`WHITESPACE`, as ``str.strip()``
    gives it. Only a value that may start or end with whitespace is trimmed: ``TRIM`` with a character set builds a
    new string for every row (16x the plain read at 20 M ids). A value whose first byte is printable ASCII (a byte
    comparison, no string built) and whose last character is not whitespace is passed as it is; this test cost
    0.06 s per million ids here, against 0.03 s for the spaces-only test it replaced."""
    return f"CASE WHEN {unpadded_sql(text)} THEN {text} ELSE TRIM({text}, {sql_string(WHITESPACE)}) END"


def unpadded_sql(text: str) -> str:
    """The condition under which :func:`stripped_sql` passes ``text`` as it is (no whitespace to trim): printable
    ASCII first, no :data:`WHITESPACE` last. Shared with the engine's type check, which counts the values failing it
    once per file so that later scans of a file without any can skip the trim (``partner/engine/relations.py``)."""
    return f"{text} >= '!' AND {text} < chr(127) AND NOT contains({sql_string(WHITESPACE)}, right({text}, 1))"


@dataclass(frozen=True)
class Scan:
    """One partner-side computation: ``sql`` (DuckDB dialect) over ``tables`` (see the module docstring)."""

    name: str
    sql: str
    tables: tuple[str, ...]
    drop_ids: bool = False
    """Remove the result's ``customer_id`` instead of tokenizing it: a row-level scan numbers customers itself
    (``ROW_NUMBER() OVER (ORDER BY customer_id)``), and tokenizing every row would cost far more than the scan."""

    keep: tuple[str, ...] = ()
    """When set, only these columns of the result come back (those it has; ``customer_id`` too unless
    ``drop_ids``): a row-level scan selecting ``r.*`` leaves the columns its queries do not read in the engine
    instead of handing every row's text to pandas."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tables) - set(CANONICAL_TABLES))
        if unknown:
            raise ValueError(f"scan {self.name} reads unknown table(s) {', '.join(unknown)}")
        read = read_tables(self.sql)
        undeclared = sorted(read - set(self.tables))
        if undeclared:  # the engine also holds each table's raw, unfiltered form: a scan reads only the protected ones
            raise ValueError(f"scan {self.name} reads table(s) it does not declare: {', '.join(undeclared)}")


def read_tables(sql: str) -> set[str]:
    """The tables ``sql`` reads (its own CTEs left out), by sqlglot's parse in DuckDB's dialect."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="duckdb")
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return {t.name for t in tree.find_all(exp.Table) if t.name and t.name not in ctes}


def naive_utc(value: str | pd.Timestamp) -> pd.Timestamp:
    """``value`` as a naive timestamp in UTC, the canonical schema's form (an offset or zone is converted, a naive
    value is taken as UTC already): the one conversion the scans and the pandas path's rules share."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def timestamp_literal(value: str | pd.Timestamp) -> str:
    """A naive-UTC timestamp literal both engines read the same way (``TIMESTAMP '2026-01-01 00:00:00'``)."""
    return f"TIMESTAMP '{naive_utc(value):%Y-%m-%d %H:%M:%S}'"

"""Key discovery counted by the partner's engine: customers per value of each dimension, without loading the
partner's tables into pandas.

The counts equal :func:`~.discovery.local_counts` on the pandas path's features exactly (the test
``tests/unit/partner/engine/test_engine_jobs.py`` holds them to it). Two passes over one rule each:

1. the distinct values of every event/transaction dimension (and the customer-attribute counts outright, one
   value per customer): the values a release may carry are decided in pandas by the same
   :func:`~.discovery.value_ok`, so that a value that may not be released cannot take one of a customer's ``k``
   places;
2. per event/transaction dimension, each in-scope customer's first time with each allowed value, ranked per
   customer by (time, value) -- the order :func:`~.aggregates._first_k_keys` uses, values compared by code point
   on both sides -- and the customers counted per value among their first ``k``.

Only values and counts come back; rows never leave the engine.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fedinsight.data.schema import FUNNEL_STAGES
from fedinsight.federation.scan import Scan, sql_string, timestamp_literal
from fedinsight.federation.task import Partner
from fedinsight.tasks.insights import discovery
from fedinsight.tasks.insights.customer_features import FeatureRules
from fedinsight.tasks.insights.customer_scan import people_sql
from fedinsight.tasks.insights.engine_features import SECONDS


def _rows_filter(table: str, rules: FeatureRules) -> str:
    """The rows the pandas path's features hold: before ``as_of``; events also from ``events_from`` with a
    funnel stage."""
    as_of = timestamp_literal(pd.Timestamp(rules.as_of_seconds, unit="s"))
    where = f"r.timestamp < {as_of}"
    if table == "events":
        if rules.events_from:
            where += f" AND r.timestamp >= {timestamp_literal(pd.Timestamp(rules.events_from))}"
        where += " AND r.stage IN (" + ", ".join(f"'{s}'" for s in FUNNEL_STAGES) + ")"
    return where


def _value(column: str, alias: str) -> str:
    return f'CAST({alias}."{column}" AS VARCHAR)'


def values_scan(table: str, column: str, rules: FeatureRules) -> Scan:
    """The distinct values of ``table.column`` among the in-scope rows discovery counts."""
    sql = (f"SELECT DISTINCT {_value(column, 'r')} AS value FROM {table} AS r\n"
           f"WHERE {_rows_filter(table, rules)} AND r.\"{column}\" IS NOT NULL")
    return Scan(f"insights.discovery_values.{table}.{column}", sql, (table,))


def attribute_scan(column: str, rules: FeatureRules) -> Scan:
    """Customers per value of a customers-table column (one value per customer)."""
    sql = (f"WITH people AS ({people_sql(rules)})\n"
           f"SELECT {_value(column, 'c')} AS value, COUNT(*) AS customers FROM customers AS c\n"
           f"JOIN people AS p ON c.customer_id = p.customer_id WHERE c.\"{column}\" IS NOT NULL GROUP BY 1")
    return Scan(f"insights.discovery_attribute.{column}", sql, ("customers",))


def first_keys_scan(table: str, column: str, refused: list[str], k: int, rules: FeatureRules) -> Scan:
    """Customers per allowed value among their first ``k`` distinct allowed values in time (see the module).

    The allowed values are given by what they are not: 1 to :data:`~.discovery.MAX_KEY_LENGTH` characters (code
    points in both engines and in Python) and none of ``refused``, the values of that length
    :func:`~.discovery.value_ok` refuses (a quote, a backslash, a control character, the reserved keys: few, where
    the allowed values may be one per row). So the scan's text does not grow with the column's values."""
    value = _value(column, "r")
    refusing = f" AND {value} NOT IN ({', '.join(sql_string(v) for v in refused)})" if refused else ""
    sql = (f"WITH people AS ({people_sql(rules)}), firsts AS (\n"
           f"  SELECT p.cust, {value} AS value, MIN({SECONDS}) AS ts\n"
           f"  FROM {table} AS r JOIN people AS p ON r.customer_id = p.customer_id\n"
           f"  WHERE {_rows_filter(table, rules)} AND length({value}) BETWEEN 1 AND {discovery.MAX_KEY_LENGTH}"
           f"{refusing}\n"
           f"  GROUP BY p.cust, {value}\n"
           "), ranked AS (\n"
           "  SELECT value, ROW_NUMBER() OVER (PARTITION BY cust ORDER BY ts, value) AS place FROM firsts\n"
           f") SELECT value, COUNT(*) AS customers FROM ranked WHERE place <= {int(k)} GROUP BY value")
    return Scan(f"insights.discovery_counts.{table}.{column}", sql, ("customers", table))


def engine_counts(partner: Partner, rules: FeatureRules, dimensions: list[dict[str, Any]],
                  k: int) -> dict[str, dict[str, float]]:
    """:func:`~.discovery.local_counts`' result, computed by the partner's engine (see the module docstring)."""
    held = partner.columns()
    out: dict[str, dict[str, float]] = {str(d["name"]): {} for d in dimensions}
    present = [d for d in dimensions if str(d["column"]) in held.get(str(d["table"]), [])]
    if not present:
        return out
    first = [attribute_scan(str(d["column"]), rules) if d["table"] == "customers"
             else values_scan(str(d["table"]), str(d["column"]), rules) for d in present]
    second: list[tuple[str, Scan]] = []
    for dim, result in zip(present, partner.scans(first), strict=True):
        name = str(dim["name"])
        if dim["table"] == "customers":
            out[name] = {str(v): float(c) for v, c in zip(result["value"], result["customers"], strict=True)
                         if discovery.value_ok(v) and c > 0}
            continue
        values = [str(v) for v in result["value"]]
        if any(discovery.value_ok(v) for v in values):
            refused = sorted(v for v in values if 1 <= len(v) <= discovery.MAX_KEY_LENGTH and not discovery.value_ok(v))
            second.append((name, first_keys_scan(str(dim["table"]), str(dim["column"]), refused, k, rules)))
    if second:
        for (name, _), result in zip(second, partner.scans([scan for _, scan in second]), strict=True):
            # value_ok again: the scan's NOT IN is not the only guard (a file rewritten between the two passes
            # brings values the first never saw)
            out[name] = {str(v): float(c) for v, c in zip(result["value"], result["customers"], strict=True)
                         if discovery.value_ok(str(v))}
    return out


def discover(partner: Partner, wire: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """This partner's key-discovery release, its counts made by its engine."""
    dimensions, k = discovery.dimensions_of(wire)
    rules = FeatureRules.from_dict(dict(wire.get("features") or {}))
    return discovery.release(engine_counts(partner, rules, dimensions, k), wire)

"""The insights batch's partner-side inputs read through the partner's engine (DuckDB by default, Spark by node
config) instead of loading the partner's tables into pandas.

Why: segment, lifecycle stage and LTV tier need a handful of sums per customer, so the engine reduces every
transaction and event to one row per customer (:func:`~.customer_scan.customer_scan`) and pandas holds only that.
Queries that look at rows get only the rows they use, numbered by customer instead of carrying ids:

- the funnel, A/B, golden-hour and channel queries (and a group-by over events) read the in-scope events before
  ``as_of`` with a funnel stage -- what the pandas path keeps of them;
- a group-by over transactions reads, per customer, only the rows that can be among its first
  ``max_rows_per_customer`` in time (``RANK()`` by timestamp, so rows tied at the cut all come): the group-by
  itself then picks exactly the rows the pandas path picks (:func:`~.aggregates.group_by`).

The engine applies the same protection as the pandas view (consent, erasure, dropped columns), so the
:class:`~.customer_features.Features` built here hold the same numbers as :func:`customer_features` on
``partner.data()``; ``tests/unit/partner/engine/test_engine_batch.py`` holds the two to exact equality.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.data.schema import EVENTS, FUNNEL_STAGES, TRANSACTIONS
from fedinsight.federation.scan import Scan, timestamp_literal
from fedinsight.federation.task import Partner
from fedinsight.tasks.insights.aggregates import NEEDS_EVENTS
from fedinsight.tasks.insights.customer_features import (
    FeatureRules,
    Features,
    Rows,
    _empty,
    codes_of,
    recency_days,
)
from fedinsight.tasks.insights.customer_scan import SCAN_ONLY, customer_scan, groups_from_scan, people_sql

SECONDS = "CAST(date_diff('second', TIMESTAMP '1970-01-01 00:00:00', r.timestamp) AS BIGINT)"
"""A row's time (alias ``r``) in whole seconds since the epoch: the ``ts`` the pandas path's rows carry."""


def _as_of(rules: FeatureRules) -> str:
    return timestamp_literal(pd.Timestamp(rules.as_of_seconds, unit="s"))


def events_scan(rules: FeatureRules) -> Scan:
    """The in-scope customers' funnel events before ``as_of`` (and from ``events_from``), numbered by customer."""
    since = f" AND r.timestamp >= {timestamp_literal(pd.Timestamp(rules.events_from))}" if rules.events_from else ""
    stages = ", ".join(f"'{s}'" for s in FUNNEL_STAGES)
    sql = (f"WITH people AS ({people_sql(rules)})\n"
           f"SELECT p.cust, {SECONDS} AS ts, r.* FROM events AS r JOIN people AS p ON r.customer_id = p.customer_id\n"
           f"WHERE r.timestamp < {_as_of(rules)}{since} AND r.stage IN ({stages})")
    return Scan("insights.event_rows", sql, ("customers", "events"), drop_ids=True)


def transactions_scan(rules: FeatureRules, cap: int, columns: Sequence[str] = ()) -> Scan:
    """Per in-scope customer, the transactions before ``as_of`` that can be among its first ``cap`` in time; only
    ``columns`` of them (and the customer's number and time) when given -- the group-bys' keys and values: at 100 M
    transactions the capped rows' other text columns took ~2 GB of pandas memory for nothing."""
    sql = (f"WITH people AS ({people_sql(rules)}), ranked AS (\n"
           f"  SELECT p.cust, {SECONDS} AS ts, r.*, RANK() OVER (PARTITION BY p.cust ORDER BY r.timestamp) AS "
           "row_rank\n"
           "  FROM transactions AS r JOIN people AS p ON r.customer_id = p.customer_id\n"
           f"  WHERE r.timestamp < {_as_of(rules)}\n"
           f") SELECT * FROM ranked WHERE row_rank <= {int(cap)}")
    keep = ("cust", "ts", "row_rank", *columns) if columns else ()
    return Scan("insights.transaction_rows", sql, ("customers", "transactions"), drop_ids=True, keep=keep)


def _row_needs(queries: Sequence[dict[str, Any]]) -> tuple[bool, int, tuple[str, ...]]:
    """(whether any query reads event rows, the largest row cap of a group-by over transactions (0: none), the
    columns those group-bys name: keys and value)."""
    events, cap, columns = False, 0, set()
    for query in queries:
        kind, params = str(query.get("kind")), dict(query.get("params") or {})
        table = params.get("table")
        events |= kind in NEEDS_EVENTS or (kind == "group_by" and table == "events")
        if kind == "group_by" and table == "transactions":
            value = params.get("max_rows_per_customer", 10)
            cap = max(cap, value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1)
            keys = params.get("group_by") or []
            columns |= {str(k) for k in (keys if isinstance(keys, list) else [keys])}
            if params.get("value"):
                columns.add(str(params["value"]))
    return events, cap, tuple(sorted(columns))


def _rows(frame: pd.DataFrame | None, spec_empty: pd.DataFrame) -> Rows:
    if frame is None:
        return Rows(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), spec_empty)
    return Rows(frame["cust"].to_numpy(dtype=np.int64), frame["ts"].to_numpy(dtype=np.int64),
                frame.reset_index(drop=True))


def engine_features(partner: Partner, rules: FeatureRules, queries: Sequence[dict[str, Any]]) -> Features:
    """The batch's :class:`Features`, computed by the partner's engine (see the module docstring)."""
    wants_events, cap, columns = _row_needs(queries)
    scans = [customer_scan(rules, attributes=True)]
    if wants_events:
        scans.append(events_scan(rules))
    if cap:
        scans.append(transactions_scan(rules, cap, columns or ("timestamp",)))
    results = partner.scans(scans)
    frame = results[0]
    event_rows = results[1] if wants_events else None
    tx_rows = results[-1] if cap else None

    groups = groups_from_scan(frame, rules)
    derived = ["purchases", "f_window", "spend_now", "spend_prev", *SCAN_ONLY,
               *(f"recent_{d}" for d in recency_days(rules))]
    customers = frame.drop(columns=derived).reset_index(drop=True)
    ev = _rows(event_rows, _empty(EVENTS))
    return Features(
        rules=rules, n=len(customers), rfm=groups["rfm"], lifecycle=groups["lifecycle"], tier_now=groups["tier_now"],
        tier_prev=groups["tier_prev"], spend_now=groups["spend_now"], spend_prev=groups["spend_prev"],
        purchases=groups["purchases"], customers=customers,
        transactions=_rows(tx_rows, _empty(TRANSACTIONS)), events=ev,
        event_stage=codes_of(ev.frame["stage"], FUNNEL_STAGES, other=False).astype(np.int8),
        tables=(), timezone=partner.timezone(),
    )

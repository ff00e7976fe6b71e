"""The insights' per-customer aggregates as one engine scan: the same numbers as :func:`customer_features`,
computed where the partner's rows lie (DuckDB or Spark) instead of in pandas.

Why a scan: segment, stage and tier need only a handful of sums and counts per customer, so the engine reduces
the partner's transactions and events to one row per customer and pandas only ever holds that. The rules that
turn the aggregates into groups are shared with the pandas path (:func:`derive_groups`), so both paths place
every customer in the same group; money is summed exactly (``DECIMAL``), which both engines agree on. The window
sums are ``SUM(...) FILTER (WHERE ...)`` rather than a ``CASE`` per row (no projection of every row's amount;
a missing amount or no row in the window is a NULL sum, read as 0 by the outer ``COALESCE``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedinsight.data.schema import FUNNEL_STAGES
from fedinsight.federation.scan import MONEY, Scan, naive_utc, timestamp_literal
from fedinsight.tasks.insights.customer_features import FeatureRules, Features, derive_groups, recency_days

AGGREGATES: tuple[str, ...] = ("purchases", "f_window", "spend_now", "spend_prev", "rfm", "lifecycle", "tier_now",
                               "tier_prev")
"""The per-customer values both paths give (indexed by the customer's token)."""


def customer_scan(rules: FeatureRules, *, attributes: bool = False) -> Scan:
    """Per customer in scope: purchases before ``as_of``, in the window, spend now and a window earlier, recent
    purchase flags, and funnel awareness/interest (see :class:`FeatureRules` for what each means).

    ``attributes``: also every column of the customers table (region, age ...: a group-by joins them) and the
    customers in the order of their raw ids, the order :func:`people_sql` numbers them in."""
    as_of = naive_utc(rules.as_of)
    day = pd.Timedelta(days=1)
    window_start = timestamp_literal(as_of - rules.window_days * day)
    prev_start = timestamp_literal(as_of - 2 * rules.window_days * day)
    recent = ",\n".join(f"    COUNT(*) FILTER (WHERE ts >= {timestamp_literal(as_of - d * day)}) AS recent_{d}"
                        for d in recency_days(rules))
    events_from = f" AND timestamp >= {timestamp_literal(rules.events_from)}" if rules.events_from else ""
    stages = ", ".join(f"'{s}'" for s in FUNNEL_STAGES)
    consent = "\nWHERE COALESCE(c.consent, FALSE)" if rules.require_consent else ""
    order = "\nORDER BY c.customer_id" if attributes else ""
    sql = f"""
WITH tx AS (
  SELECT customer_id, timestamp AS ts, amount
  FROM transactions WHERE timestamp < {timestamp_literal(as_of)}
), t AS (
  SELECT customer_id,
    COUNT(*) AS purchases,
    COUNT(*) FILTER (WHERE ts >= {window_start}) AS f_window,
    SUM(CAST(amount AS {MONEY})) FILTER (WHERE ts >= {window_start}) AS spend_now,
    SUM(CAST(amount AS {MONEY})) FILTER (WHERE ts < {window_start} AND ts >= {prev_start}) AS spend_prev,
{recent}
  FROM tx GROUP BY customer_id
), e AS (
  SELECT customer_id, COUNT(*) AS aware, COUNT(*) FILTER (WHERE stage <> '{FUNNEL_STAGES[0]}') AS interested
  FROM events WHERE timestamp < {timestamp_literal(as_of)}{events_from} AND stage IN ({stages})
  GROUP BY customer_id
)
SELECT {"c.*" if attributes else "c.customer_id"},
  COALESCE(t.purchases, 0) AS purchases, COALESCE(t.f_window, 0) AS f_window,
  COALESCE(t.spend_now, CAST(0 AS {MONEY})) AS spend_now, COALESCE(t.spend_prev, CAST(0 AS {MONEY})) AS spend_prev,
  {", ".join(f"COALESCE(t.recent_{d}, 0) AS recent_{d}" for d in recency_days(rules))},
  COALESCE(e.aware, 0) AS aware, COALESCE(e.interested, 0) AS interested
FROM customers AS c LEFT JOIN t ON c.customer_id = t.customer_id
LEFT JOIN e ON c.customer_id = e.customer_id{consent}{order}
"""
    return Scan("insights.customer_aggregates", sql, ("customers", "transactions", "events"))


def people_sql(rules: FeatureRules) -> str:
    """The customers a batch counts, numbered 0..n-1 in the order of their raw ids (the order of
    ``customer_scan(rules, attributes=True)``): row-level scans carry this number instead of the id."""
    consent = " WHERE COALESCE(consent, FALSE)" if rules.require_consent else ""
    return ("SELECT customer_id, CAST(ROW_NUMBER() OVER (ORDER BY customer_id) - 1 AS BIGINT) AS cust "
            f"FROM customers{consent}")


def groups_from_scan(frame: pd.DataFrame, rules: FeatureRules) -> dict[str, np.ndarray]:
    """The scan's per-customer counts and sums as arrays, with the groups placed by the rules the pandas path uses
    (:func:`derive_groups`): purchases, f_window, spend_now, spend_prev, rfm, lifecycle, tier_now, tier_prev --
    :data:`AGGREGATES`, in the scan's row order. Shared by the batch (:mod:`.engine_features`) and the comparison
    table (:func:`aggregates_from_scan`)."""
    def ints(column: str) -> np.ndarray:
        return frame[column].to_numpy(dtype=np.int64)

    purchases, f_window = ints("purchases"), ints("f_window")
    spend_now = frame["spend_now"].to_numpy(dtype=float)
    spend_prev = frame["spend_prev"].to_numpy(dtype=float)
    recent = {d: ints(f"recent_{d}") > 0 for d in recency_days(rules)}
    rfm, lifecycle, tier_now, tier_prev = derive_groups(rules, purchases, f_window, recent, ints("aware") > 0,
                                                        ints("interested") > 0, spend_now, spend_prev)
    return {"purchases": purchases, "f_window": f_window, "spend_now": spend_now, "spend_prev": spend_prev,
            "rfm": rfm, "lifecycle": lifecycle, "tier_now": tier_now, "tier_prev": tier_prev}


SCAN_ONLY: tuple[str, ...] = ("aware", "interested")
"""Columns of the scan that only feed the groups (with the ``recent_<days>`` flags of :func:`recency_days`)."""


def aggregates_from_scan(frame: pd.DataFrame, rules: FeatureRules) -> pd.DataFrame:
    """The scan's result as the per-customer table of :data:`AGGREGATES`, groups placed by the shared rules."""
    out = pd.DataFrame(groups_from_scan(frame, rules),
                       index=pd.Index(frame["customer_id"].astype(str), name="customer_id"))
    return out.sort_index()


def aggregates_from_features(features: Features) -> pd.DataFrame:
    """The same table from the pandas path's :class:`Features` (to compare the two paths)."""
    tx = features.transactions
    window_start = features.rules.as_of_seconds - features.rules.window_days * 86_400
    f_window = np.bincount(tx.cust[tx.ts >= window_start], minlength=features.n)
    out = pd.DataFrame({"purchases": features.purchases, "f_window": f_window, "spend_now": features.spend_now,
                        "spend_prev": features.spend_prev, "rfm": features.rfm, "lifecycle": features.lifecycle,
                        "tier_now": features.tier_now, "tier_prev": features.tier_prev},
                       index=pd.Index(features.customers["customer_id"].astype(str), name="customer_id"))
    return out.sort_index()

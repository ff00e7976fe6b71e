"""The propensity features' per-customer aggregates as one engine scan (DuckDB or Spark), then the same table
:func:`customer_table` gives from pandas.

Why split this way: the engine reduces the partner's transactions to purchase days per customer and then to one
row per customer (days, first and last day, exact money sums, squared gaps); the float maths on those few numbers
(means, the gaps' coefficient of variation, the BG/NBD dormancy) runs in pandas on the small result. Counts,
days and money equal the pandas path exactly; ``regularity`` comes from the same exact integers through the same
formula (:func:`~.features.gap_regularity`), so it is equal too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedinsight.federation.scan import MONEY, Scan, timestamp_literal
from fedinsight.tasks.propensity.features import DORMANCY_DAYS, FEATURES, LABELS, LabelWindow, gap_regularity

_EPOCH_DAY = "date_diff('day', DATE '1970-01-01', CAST(timestamp AS DATE))"


def customer_scan(window: LabelWindow) -> Scan:
    """Per customer with a purchase in ``[start, cutoff)``: purchase days, first/last day, money, units, gaps; and
    its holdout purchases in ``[cutoff, end)``."""
    start, cutoff, end = (timestamp_literal(t) for t in (window.start, window.cutoff, window.end))
    sql = f"""
WITH days AS (
  SELECT customer_id, {_EPOCH_DAY} AS day, SUM(CAST(amount AS {MONEY})) AS amount,
         CAST(SUM(quantity) AS BIGINT) AS quantity
  FROM transactions WHERE timestamp >= {start} AND timestamp < {cutoff}
  GROUP BY customer_id, {_EPOCH_DAY}
), gaps AS (
  SELECT customer_id, day, amount, quantity,
         day - LAG(day) OVER (PARTITION BY customer_id ORDER BY day) AS gap
  FROM days
), calibration AS (
  SELECT customer_id, COUNT(*) AS n_days, MIN(day) AS first_day, MAX(day) AS last_day,
         SUM(amount) AS monetary_total, MIN_BY(amount, day) AS first_amount,
         CAST(SUM(quantity) AS BIGINT) AS quantity, COUNT(gap) AS n_gaps,
         CAST(SUM(gap * gap) AS BIGINT) AS sum_sq_gaps
  FROM gaps GROUP BY customer_id
), holdout AS (
  SELECT customer_id, COUNT(*) AS holdout_rows, SUM(CAST(amount AS {MONEY})) AS spend
  FROM transactions WHERE timestamp >= {cutoff} AND timestamp < {end}
  GROUP BY customer_id
)
SELECT c.customer_id, c.n_days, c.first_day, c.last_day, c.monetary_total, c.first_amount, c.quantity, c.n_gaps,
       c.sum_sq_gaps, COALESCE(h.holdout_rows, 0) AS holdout_rows, COALESCE(h.spend, CAST(0 AS {MONEY})) AS spend
FROM calibration AS c LEFT JOIN holdout AS h ON c.customer_id = h.customer_id
"""
    return Scan("propensity.customer_table", sql, ("transactions",))


def table_from_scan(frame: pd.DataFrame, window: LabelWindow) -> pd.DataFrame:
    """The scan's result as :func:`~fedinsight.tasks.propensity.features.customer_table` lays it out."""
    if frame.empty:
        return pd.DataFrame(columns=[*FEATURES, *LABELS], index=pd.Index([], name="customer_id"), dtype=float)
    cutoff_day = (window.cutoff.normalize() - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
    cutoff_offset = (window.cutoff - window.cutoff.normalize()) / pd.Timedelta(days=1)
    n_days = frame["n_days"].to_numpy(dtype=np.int64)
    first = frame["first_day"].to_numpy(dtype=np.int64)
    last = frame["last_day"].to_numpy(dtype=np.int64)
    out = pd.DataFrame(index=pd.Index(frame["customer_id"].astype(str), name="customer_id"))
    out["frequency"] = (n_days - 1).astype(float)
    out["recency"] = (last - first).astype(float)
    out["tenure"] = (cutoff_day - first) + cutoff_offset
    out["monetary_total"] = frame["monetary_total"].to_numpy(dtype=float)
    out["monetary_mean"] = out["monetary_total"] / n_days
    out["first_amount"] = frame["first_amount"].to_numpy(dtype=float)
    out["quantity"] = frame["quantity"].to_numpy(dtype=float)
    out["days_since_last"] = out["tenure"] - out["recency"]
    out["regularity"] = gap_regularity(frame["n_gaps"].to_numpy(dtype=np.int64), (last - first).astype(float),
                                       frame["sum_sq_gaps"].to_numpy(dtype=float))
    out["dormancy"] = out["frequency"] * np.log((out["tenure"] + DORMANCY_DAYS) / (out["recency"] + DORMANCY_DAYS))
    out["spend"] = frame["spend"].to_numpy(dtype=float)
    out["buys_again"] = (frame["holdout_rows"].to_numpy(dtype=np.int64) > 0).astype(float)
    out["churn"] = 1.0 - out["buys_again"]
    return out[[*FEATURES, *LABELS]].sort_index()

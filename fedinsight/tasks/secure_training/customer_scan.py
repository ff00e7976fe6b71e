"""Secure training's log-RFM features from one engine scan (DuckDB or Spark), then the same transforms
:func:`~.client.rfm_features` applies in pandas.

Why split this way: the engine reduces the partner's transactions to one row per customer with a purchase on or
before the cutoff -- purchases, amounts counted and summed exactly, microseconds from the last purchase to the
cutoff, whether it bought after the cutoff -- and pandas takes the logs on those few numbers. Counts and the
whole days of recency are integers and money is summed exactly, so the features equal the pandas path's (the
engine tests check it); rows are ordered by customer token, as the pandas group-by orders them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.federation.scan import MONEY, Scan, naive_utc, timestamp_literal
from fedinsight.federation.task import Partner

_US_PER_DAY = 86_400 * 1_000_000


def rfm_scan(cutoff: pd.Timestamp) -> Scan:
    """Per customer with a purchase on or before ``cutoff``: purchases, amount count and sum, microseconds since its
    last purchase, and whether it bought after ``cutoff``."""
    cut = timestamp_literal(cutoff)
    sql = f"""
WITH before AS (
  SELECT customer_id, COUNT(*) AS n, COUNT(amount) AS n_amount, SUM(CAST(amount AS {MONEY})) AS spend,
         CAST(date_diff('microsecond', MAX(timestamp), {cut}) AS BIGINT) AS recency_us
  FROM transactions WHERE timestamp <= {cut} GROUP BY customer_id
), after AS (
  SELECT DISTINCT customer_id FROM transactions WHERE timestamp > {cut}
)
SELECT b.customer_id, b.n, b.n_amount, b.spend, b.recency_us,
       CASE WHEN a.customer_id IS NULL THEN 0 ELSE 1 END AS buys_after
FROM before AS b LEFT JOIN after AS a ON b.customer_id = a.customer_id
"""
    return Scan("secure_training.rfm", sql, ("transactions",))


def engine_rfm_features(partner: Partner, cutoff: str) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`~.client.rfm_features` gives on the partner's transactions, computed by its engine."""
    frame = partner.scan(rfm_scan(naive_utc(cutoff)))
    if frame.empty:
        if "transactions" not in partner.columns():  # the engine reads an absent table as empty
            raise ConfigError(f"partner {partner.partner_id} has no transactions table to train on")
        raise ConfigError(f"no transactions on or before the cutoff {cutoff}; choose a later --cutoff")
    frame = frame.assign(customer_id=frame["customer_id"].astype(str)).sort_values("customer_id")
    n = frame["n"].to_numpy(dtype=np.int64)
    n_amount = frame["n_amount"].to_numpy(dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):  # a customer without any amount: NaN, as pandas' mean
        aov = np.where(n_amount > 0, frame["spend"].to_numpy(dtype=float) / n_amount, np.nan)
    days = frame["recency_us"].to_numpy(dtype=np.int64) // _US_PER_DAY
    x = np.column_stack([np.log1p(n), np.log1p(aov), days / 365.25])
    return x.astype(np.float64), frame["buys_after"].to_numpy(dtype=np.float64)

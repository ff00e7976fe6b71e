"""Uplift's audience and the offer list's features from one engine scan (DuckDB or Spark), then the same public
transforms the pandas path applies (:func:`~.features.unit_features`).

Why split this way: the engine reduces the campaign's events to one row per exposed customer (its arm, exposure
time and whether a conversion followed) and joins each customer's purchases before that moment, reduced to a few
integers and exact money sums (purchases, purchases in the year before, spend in that year and overall,
microseconds from the first and last purchase). pandas holds only that one row per customer and scales it. Counts
are integers, money is summed exactly and durations are whole microseconds on both paths, so the audience equals
:func:`~.features.audience` on the partner's tables (the engine tests check it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.federation.scan import MONEY, Scan, timestamp_literal
from fedinsight.federation.task import Partner
from fedinsight.tasks.uplift.features import US_PER_DAY, YEAR, Audience, check_arms, empty_raw, unit_features

_ZERO = f"CAST(0 AS {MONEY})"
_AMOUNT = f"GREATEST(COALESCE(CAST(t.amount AS {MONEY}), {_ZERO}), {_ZERO})"  # as pandas: missing or negative is 0
_YEAR_US = int(YEAR / pd.Timedelta(microseconds=1))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _text(column: str) -> str:
    return f"CAST({column} AS VARCHAR)"


def _purchases(reference: str) -> str:
    """Per customer of the ``reference`` CTE (``customer_id``, ``exposed_at``): its purchases strictly before
    ``exposed_at`` reduced to integers and exact sums."""
    gap = "date_diff('microsecond', t.timestamp, r.exposed_at)"
    return f"""bought AS (
  SELECT r.customer_id, COUNT(*) AS orders,
         CAST(SUM(CASE WHEN {gap} <= {_YEAR_US} THEN 1 ELSE 0 END) AS BIGINT) AS frequency,
         SUM(CASE WHEN {gap} <= {_YEAR_US} THEN {_AMOUNT} ELSE {_ZERO} END) AS monetary,
         SUM({_AMOUNT}) AS spend,
         CAST(MIN({gap}) AS BIGINT) AS recency_us, CAST(MAX({gap}) AS BIGINT) AS tenure_us
  FROM {reference} AS r JOIN transactions AS t ON t.customer_id = r.customer_id AND t.timestamp < r.exposed_at
  GROUP BY r.customer_id
)"""


_FEATURE_COLUMNS = ("b.orders, b.frequency, b.monetary, b.spend, b.recency_us, b.tenure_us")


def audience_scan(campaign: str, arms: tuple[str, ...]) -> Scan:
    """Per customer exposed to ``campaign`` in one of ``arms``: the first exposure's arm (ties: the arm listed
    first), its time, a conversion of the campaign at or after it, and its purchases before it."""
    arm_index = " ".join(f"WHEN {_quote(a)} THEN {i}" for i, a in enumerate(arms))
    in_arms = ", ".join(_quote(a) for a in arms)
    sql = f"""
WITH exposures AS (
  SELECT customer_id, timestamp, CASE {_text('arm')} {arm_index} END AS arm
  FROM events
  WHERE {_text('campaign')} = {_quote(campaign)} AND {_text('stage')} = 'exposure' AND {_text('arm')} IN ({in_arms})
), ranked AS (
  SELECT customer_id, timestamp, arm,
         ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY timestamp, arm) AS k
  FROM exposures
), first_exposure AS (
  SELECT customer_id, timestamp AS exposed_at, arm FROM ranked WHERE k = 1
), conversions AS (
  SELECT customer_id, MAX(timestamp) AS converted_at FROM events
  WHERE {_text('campaign')} = {_quote(campaign)} AND {_text('stage')} = 'convert'
  GROUP BY customer_id
), {_purchases('first_exposure')}
SELECT f.customer_id, f.arm, CASE WHEN c.converted_at >= f.exposed_at THEN 1 ELSE 0 END AS converted,
       {_FEATURE_COLUMNS}
FROM first_exposure AS f LEFT JOIN conversions AS c ON c.customer_id = f.customer_id
LEFT JOIN bought AS b ON b.customer_id = f.customer_id
"""
    return Scan("uplift.audience", sql, ("events", "transactions"))


def features_scan(when: pd.Timestamp, source: str) -> Scan:
    """Per customer of ``source`` (``customers``, else ``transactions``): its purchases before ``when``."""
    reference = (f"SELECT DISTINCT customer_id, {timestamp_literal(when)} AS exposed_at FROM {source}")
    sql = f"""
WITH reference AS ({reference}), {_purchases('reference')}
SELECT r.customer_id, {_FEATURE_COLUMNS}
FROM reference AS r LEFT JOIN bought AS b ON b.customer_id = r.customer_id
"""
    tables = ("customers", "transactions") if source == "customers" else ("transactions",)
    return Scan("uplift.features_at", sql, tables)


def _money(values: pd.Series) -> np.ndarray:
    """Exact sums as floats (``float(Decimal)`` rounds correctly); a customer without purchases has 0."""
    return np.asarray([0.0 if v is None or v != v else float(v) for v in values], dtype=float)


def _features(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(unit features, mean order value, spend in the year before, purchases) from the scan's per-customer rows,
    as :func:`~.features.features_at` gives them."""
    n = len(frame)
    raw = empty_raw(n)
    orders = frame["orders"].fillna(0).to_numpy(dtype=np.int64)
    bought = orders > 0
    spend, monetary = _money(frame["spend"]), _money(frame["monetary"])
    raw["recency"][bought] = frame["recency_us"].to_numpy()[bought].astype(np.int64) / US_PER_DAY
    raw["tenure"][bought] = frame["tenure_us"].to_numpy()[bought].astype(np.int64) / US_PER_DAY
    raw["frequency"] = frame["frequency"].fillna(0).to_numpy(dtype=np.int64).astype(float)
    raw["monetary"] = monetary
    raw["basket"][bought] = spend[bought] / orders[bought]
    return unit_features(raw), raw["basket"], raw["monetary"], orders.astype(float)


def _by_token(frame: pd.DataFrame) -> pd.DataFrame:
    ids = frame["customer_id"].astype(str)
    return frame.assign(customer_id=ids).sort_values("customer_id", kind="stable").reset_index(drop=True)


def engine_audience(partner: Partner, campaign: str, arms: tuple[str, ...]) -> Audience:
    """What :func:`~.features.audience` gives on the partner's tables, computed by its engine (customers in token
    order, as the pandas group-by orders them); the same ConfigErrors, before any budget is charged."""
    if "arm" not in partner.columns().get("events", []):
        raise ConfigError(f"uplift needs an events table with an 'arm' column (campaign '{campaign}': exposure and "
                          "convert rows, one arm per customer)")
    frame = _by_token(partner.scan(audience_scan(campaign, arms)))
    if frame.empty:
        raise ConfigError(f"campaign '{campaign}' has no exposures in arms {', '.join(arms)} at this partner")
    arm = frame["arm"].to_numpy(dtype=np.int64)
    check_arms(arm, campaign, arms)
    x, order_value, spend_year, orders = _features(frame)
    return Audience(pd.Index(frame["customer_id"].astype("string"), name="customer_id"), arm.astype(int),
                    frame["converted"].to_numpy(dtype=np.int64).astype(float), x, order_value, spend_year, orders)


def engine_features_at(partner: Partner, when: pd.Timestamp) -> tuple[pd.Index, tuple[np.ndarray, ...]]:
    """Every customer of the partner (its customers table's, else its buyers) in token order, with
    :func:`~.features.features_at`'s features as of ``when`` (ConfigError without either table)."""
    columns = partner.columns()
    source = "customers" if "customers" in columns else "transactions" if "transactions" in columns else None
    if source is None:
        raise ConfigError("an offer list needs the partner's customers or transactions table")
    frame = _by_token(partner.scan(features_scan(when, source)))
    return pd.Index(frame["customer_id"].to_numpy(dtype=object)), _features(frame)

"""Customer vectors for segmentation: fixed, public transforms of a customer's purchases into [0, 1]^d.

Why fixed transforms: every partner must mean the same thing by "0.7 on monetary", and a scaling learnt from
one partner's data (its maximum, its standard deviation) would be both a leak and a different ruler at every
partner. So each feature is ``log1p(value) / log1p(public cap)``, clipped to [0, 1]; the caps are declared
here and printed in the report and in docs/segments.md. A vector in [0, 1]^d has L2 norm at most sqrt(d):
that is the per-customer bound the noisy sums are calibrated to.

Only customers with at least one purchase strictly before the job's reference date ``as_of`` are segmented
(rows on or after it are ignored): the date is part of the job, never "the latest date in the data".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError


@dataclass(frozen=True)
class Feature:
    """One coordinate of a customer's vector: what it measures and the public cap it is scaled by."""

    name: str
    cap: float
    unit: str
    bands: tuple[tuple[float, str], ...]  # (raw value at least, word), highest first; the last one catches all
    share: bool = False  # already a share in [0, 1]: used as it is, no log scale


FEATURES: dict[str, Feature] = {
    "recency": Feature("recency", 730.0, "days since the last purchase",
                       ((365, "lapsed"), (180, "lapsing"), (90, "cooling"), (30, "recent"), (0, "very recent"))),
    "frequency": Feature("frequency", 50.0, "purchases",
                         ((10, "very frequent"), (4, "frequent"), (1.5, "repeat"), (0, "one-off"))),
    "monetary": Feature("monetary", 5_000.0, "total spend",
                        ((1000, "top spend"), (250, "high spend"), (75, "mid spend"), (0, "low spend"))),
    "basket": Feature("basket", 1_000.0, "mean order value",
                      ((200, "big baskets"), (50, "mid baskets"), (0, "small baskets"))),
    "tenure": Feature("tenure", 3_650.0, "days since the first purchase",
                      ((1095, "long-standing"), (365, "established"), (90, "settling in"), (0, "new"))),
    "evening": Feature("evening", 1.0, "share of purchases 18:00-24:00 local time",
                       ((0.5, "evening shoppers"), (0.2, "some evenings"), (0, "daytime shoppers")), share=True),
}
"""The features a job may choose (``--features``), with their public caps."""

DEFAULT_FEATURES = "recency,frequency,monetary"


def parse_features(text: str) -> tuple[str, ...]:
    """The job's feature names, in the given order (ConfigError naming the known ones otherwise)."""
    names = tuple(dict.fromkeys(s.strip() for s in str(text).split(",") if s.strip()))
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise ConfigError(f"--features: unknown or empty {unknown or text!r}; choose from {', '.join(FEATURES)}")
    return names


def scale(raw: np.ndarray, cap: float) -> np.ndarray:
    """``log1p(raw) / log1p(cap)`` clipped to [0, 1] (negative raw values count as 0)."""
    return np.clip(np.log1p(np.maximum(np.asarray(raw, dtype=float), 0.0)) / math.log1p(cap), 0.0, 1.0)


def partner_zone(meta: dict[str, object]) -> str:
    """The partner's own time zone from its data view (``meta["timezone"]``; UTC when it states none), checked."""
    zone = str(meta.get("timezone") or "UTC")
    zone = "UTC" if zone == "local" else zone
    try:
        pd.Timestamp("2000-01-01", tz=zone)
    except Exception:  # noqa: BLE001 - any unknown zone name
        raise ConfigError(f"the partner's time zone {zone!r} is not an IANA zone (e.g. Asia/Shanghai)") from None
    return zone


def customer_vectors(transactions: pd.DataFrame | None, as_of: str, features: tuple[str, ...],
                     zone: str = "UTC") -> pd.DataFrame:
    """One row per customer with a purchase before ``as_of`` (index: the view's customer tokens), one column per
    feature, every value in [0, 1]. Recency is reversed (1 = bought yesterday) so that "high" reads as good;
    ``evening`` reads purchase hours in the partner's own time ``zone``."""
    try:
        cut = pd.Timestamp(as_of)
    except (TypeError, ValueError):
        cut = pd.NaT
    if cut is pd.NaT:
        raise ConfigError(f"--as-of must be a date such as 2026-01-01 (got {as_of!r})")
    if transactions is None:
        raise ConfigError("segments needs a transactions table (customer_id, timestamp, amount)")
    tx = transactions[["customer_id", "timestamp", "amount"]]
    stamps = pd.to_datetime(tx["timestamp"], utc=True)
    cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    tx = tx[stamps < cut].assign(timestamp=stamps[stamps < cut])
    if tx.empty:
        return pd.DataFrame(columns=list(features), dtype=float)
    grouped = tx.groupby("customer_id")
    amount = pd.to_numeric(tx["amount"], errors="coerce").fillna(0.0).clip(lower=0.0)
    spend = amount.groupby(tx["customer_id"]).sum()
    count = grouped.size()
    days = (cut - grouped["timestamp"].max()).dt.total_seconds() / 86_400.0
    raw = {"recency": days, "frequency": count, "monetary": spend, "basket": spend / count,
           "tenure": (cut - grouped["timestamp"].min()).dt.total_seconds() / 86_400.0}
    if "evening" in features:
        evening = (tx["timestamp"].dt.tz_convert(zone).dt.hour >= 18).astype(float)
        raw["evening"] = evening.groupby(tx["customer_id"]).mean()
    out = pd.DataFrame(index=count.index)
    for name in features:
        column = raw[name].reindex(count.index).to_numpy()
        values = np.clip(column, 0.0, 1.0) if FEATURES[name].share else scale(column, FEATURES[name].cap)
        out[name] = 1.0 - values if name == "recency" else values
    return out.astype(float)


def describe(centre: np.ndarray, features: tuple[str, ...]) -> str:
    """A centre in a marketer's words: each feature's typical raw value (:func:`raw_value`) placed in the
    feature's declared bands ("very recent", "frequent", "high spend" ...). Bands are on raw values, not on the
    log scale, so that "recent" means the same number of days whatever the cap."""
    words = []
    for value, name in zip(centre, features, strict=True):
        raw = raw_value(float(value), name)
        words.append(next(word for floor, word in FEATURES[name].bands if raw >= floor))
    return ", ".join(words)


def raw_value(value: float, name: str) -> float:
    """The typical raw value a scaled coordinate stands for (inverse of :func:`scale`), for the report."""
    f = FEATURES[name]
    v = min(max(1.0 - value if name == "recency" else value, 0.0), 1.0)
    return float(v) if f.share else float(math.expm1(v * math.log1p(f.cap)))

"""Per-customer features a partner computes for insights: RFM segment, lifecycle stage, LTV tier, spend.

Why declared rules: which group a customer falls into must not depend on other customers, or the
group structure itself would leak. So every threshold here is a fixed, declared number and the
reference date ``as_of`` is part of the query, never "the latest date in the data". Only customers who
consented (when the partner records consent) and rows strictly before ``as_of`` are used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import EVENTS, FUNNEL_STAGES, TRANSACTIONS, PartnerData, TableSpec
from fedinsight.federation.scan import naive_utc

RFM_SEGMENTS: tuple[str, ...] = ("champions", "loyal", "potential", "at_risk", "hibernating")
LIFECYCLE_STAGES: tuple[str, ...] = ("non_brand", "aware", "interested", "purchased", "loyal")
LTV_TIERS: tuple[str, ...] = ("none", "low", "mid", "high", "top")
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS: tuple[str, ...] = tuple(f"{h:02d}" for h in range(24))
DERIVED_GROUPS: dict[str, tuple[str, ...]] = {
    "rfm_segment": RFM_SEGMENTS,
    "lifecycle_stage": LIFECYCLE_STAGES,
    "ltv_tier": LTV_TIERS,
}
"""Per-customer attributes computed locally with declared rules; their keys are fixed."""

_DAY = 86_400


# --- rules ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FeatureRules:
    """Declared, data-independent rules that place each customer in a segment, stage and tier.

    Only rows strictly before ``as_of`` count. "Recent" means a purchase in the last N days before
    ``as_of``; "purchases" in a segment rule are those in the trailing ``window_days``.
    """

    as_of: str
    window_days: int = 365
    champions_max_recency_days: int = 30
    champions_min_purchases: int = 15
    loyal_max_recency_days: int = 90
    loyal_min_purchases: int = 8
    potential_max_recency_days: int = 90
    at_risk_max_recency_days: int = 365
    lifecycle_loyal_min_purchases: int = 4
    repurchase_min_purchases: int = 2
    ltv_tier_bounds: tuple[float, float, float] = (100.0, 500.0, 2000.0)
    spend_cap: float = 5_000.0
    value_cap: float = 10_000.0
    require_consent: bool = True
    events_from: str = ""  # start of the time window for events ("" = no start)

    def __post_init__(self) -> None:
        if self.events_from:
            try:
                start = pd.Timestamp(self.events_from)
            except (TypeError, ValueError):
                start = pd.NaT
            if start is pd.NaT:
                raise ConfigError(f"events_from must be a date such as 2025-10-01 (got {self.events_from!r})")
        try:
            stamp = pd.Timestamp(self.as_of)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"as_of must be a date such as 2026-01-01 (got {self.as_of!r})") from exc
        if stamp is pd.NaT:
            raise ConfigError(f"as_of must be a date such as 2026-01-01 (got {self.as_of!r})")
        ints = ("window_days", "champions_max_recency_days", "champions_min_purchases", "loyal_max_recency_days",
                "loyal_min_purchases", "potential_max_recency_days", "at_risk_max_recency_days",
                "lifecycle_loyal_min_purchases", "repurchase_min_purchases")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"feature rule {name} must be a whole number >= 1 (got {value!r})")
        bounds = tuple(float(b) for b in self.ltv_tier_bounds)
        if len(bounds) != 3 or not (0 < bounds[0] < bounds[1] < bounds[2]):
            raise ConfigError(f"ltv_tier_bounds must be three increasing positive numbers (got {self.ltv_tier_bounds})")
        object.__setattr__(self, "ltv_tier_bounds", bounds)
        for name in ("spend_cap", "value_cap"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"feature rule {name} must be a positive number (got {value!r})")

    @property
    def as_of_seconds(self) -> int:
        return _utc_seconds(self.as_of)

    @property
    def events_from_seconds(self) -> int | None:
        return _utc_seconds(self.events_from) if self.events_from else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureRules:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown feature rule(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "as_of" not in data:
            raise ConfigError("feature rules need as_of (the reference date, e.g. 2026-01-01)")
        values = dict(data)
        if "ltv_tier_bounds" in values:
            values["ltv_tier_bounds"] = tuple(values["ltv_tier_bounds"])
        return cls(**values)


def _utc_seconds(date: str) -> int:
    return int(naive_utc(date).to_datetime64().astype("datetime64[s]").astype(np.int64))


UTC_ZONE = "UTC"
LOCAL = "local"


def check_zone(name: str) -> str:
    """``name`` if it is ``"local"`` or an IANA time zone this machine knows (``Asia/Shanghai``); else ValueError."""
    if name == LOCAL:
        return name
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"time zone {name!r} is neither 'local' nor an IANA zone name such as Asia/Shanghai "
                         "or America/New_York") from None
    return name


def local_seconds(utc_seconds: np.ndarray, zone: str) -> np.ndarray:
    """Naive-UTC epoch seconds as wall-clock seconds in ``zone`` (daylight saving included), for hours and days.

    Why wall-clock seconds: hour of day and weekday are then ``(s // 3600) % 24`` and ``(s // 86400 + 3) % 7``
    whatever the zone, so every hour-based insight reads the same arrays.
    """
    if zone == UTC_ZONE or utc_seconds.size == 0:
        return utc_seconds
    try:
        check_zone(zone)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    stamps = pd.DatetimeIndex(utc_seconds.astype("datetime64[s]")).tz_localize("UTC").tz_convert(zone)
    return stamps.tz_localize(None).to_numpy().astype("datetime64[s]").astype(np.int64)


def codes_of(values: pd.Series, keys: Sequence[str], *, other: bool = True) -> np.ndarray:
    """Index of each value in ``keys``; undeclared values map to ``len(keys)`` ("other") or -1."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    lookup = {k: i for i, k in enumerate(keys)}
    fallback = len(keys) if other else -1
    mapped = np.array([lookup.get(str(u), fallback) for u in uniques] + [fallback], dtype=np.int64)
    return mapped[codes]  # the NA sentinel -1 picks the appended fallback


# --- per-customer features -----------------------------------------------------------------------

@dataclass
class Rows:
    """Rows of one table that belong to included customers, before ``as_of``."""

    cust: np.ndarray  # customer index (0..n-1), int64
    ts: np.ndarray  # seconds since epoch, int64
    frame: pd.DataFrame  # the same rows (for declared raw columns)


@dataclass
class Features:
    """Everything the queries need, computed once per batch on the partner."""

    rules: FeatureRules
    n: int
    rfm: np.ndarray
    lifecycle: np.ndarray
    tier_now: np.ndarray
    tier_prev: np.ndarray
    spend_now: np.ndarray
    spend_prev: np.ndarray
    purchases: np.ndarray
    customers: pd.DataFrame
    transactions: Rows
    events: Rows
    event_stage: np.ndarray  # int8 index into FUNNEL_STAGES, per events row
    tables: tuple[str, ...] = field(default_factory=tuple)
    timezone: str = UTC_ZONE  # the partner's own zone (its customers' local time), from its data view

    def zone(self, requested: str) -> str:
        """The zone hours are read in: the partner's own for ``"local"``, else the one the analyst named."""
        return self.timezone if requested == LOCAL else requested

    def attribute(self, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """A derived per-customer attribute as (codes per customer, keys)."""
        if name == "rfm_segment":
            return self.rfm, RFM_SEGMENTS
        if name == "lifecycle_stage":
            return self.lifecycle, LIFECYCLE_STAGES
        if name == "ltv_tier":
            return self.tier_now, LTV_TIERS
        if name == "all":
            return np.zeros(self.n, dtype=np.int8), ("all",)
        raise ConfigError(f"unknown customer grouping '{name}' (known: all, {', '.join(DERIVED_GROUPS)})")


def _seconds(series: pd.Series) -> np.ndarray:
    values = series.to_numpy()
    if not np.issubdtype(values.dtype, np.datetime64):
        values = pd.to_datetime(series).to_numpy()
    return values.astype("datetime64[s]").astype(np.int64)


def _customer_codes(ids: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each id in ``index`` (-1 if absent); factorize first, which is far faster on many rows."""
    codes, uniques = pd.factorize(ids)
    mapped = index.get_indexer(uniques)
    out = np.full(len(codes), -1, dtype=np.int64)
    ok = codes >= 0
    out[ok] = mapped[codes[ok]]
    return out


def _empty(spec: TableSpec) -> pd.DataFrame:
    dtypes = {c: "datetime64[s]" if c == "timestamp" else "float64" if c == "amount" else object
              for c in spec.column_names}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


def _rows(frame: pd.DataFrame, index: pd.Index, as_of: int) -> Rows:
    cust = _customer_codes(frame["customer_id"], index)
    ts = _seconds(frame["timestamp"])
    keep = (cust >= 0) & (ts < as_of)
    if keep.all():
        return Rows(cust, ts, frame)
    return Rows(cust[keep], ts[keep], frame.loc[keep])


def customer_features(data: PartnerData, rules: FeatureRules) -> Features:
    """Segment, lifecycle stage, LTV tier, spend and purchases of every included customer."""
    as_of = rules.as_of_seconds
    customers = data.customers
    if customers is None:
        ids = [f["customer_id"] for f in (data.transactions, data.events) if f is not None]
        if not ids:
            raise ConfigError(f"partner {data.partner_id} has no customers, transactions or events table")
        customers = pd.DataFrame({"customer_id": pd.unique(pd.concat(ids, ignore_index=True))})
    assert isinstance(customers, pd.DataFrame)
    if rules.require_consent and "consent" in customers.columns:
        customers = customers.loc[customers["consent"].fillna(False).astype(bool)]
    customers = customers.reset_index(drop=True)
    index = pd.Index(customers["customer_id"])
    n = len(customers)

    # A partner without a table simply has no such rows: its aggregates are zeros (plus noise).
    tx = _rows(data.transactions if data.transactions is not None else _empty(TRANSACTIONS), index, as_of)
    ev = _rows(data.events if data.events is not None else _empty(EVENTS), index, as_of)
    start = rules.events_from_seconds
    if start is not None and len(ev.cust):
        late = ev.ts >= start
        if not late.all():
            ev = Rows(ev.cust[late], ev.ts[late], ev.frame.loc[late])

    window = rules.window_days * _DAY
    if len(tx.cust):
        amount = tx.frame["amount"].to_numpy(dtype=float, na_value=0.0)
        age = as_of - tx.ts
        purchases = np.bincount(tx.cust, minlength=n)
        in_window = age <= window
        recent = {d: np.bincount(tx.cust[age <= d * _DAY], minlength=n) > 0 for d in {
            rules.champions_max_recency_days, rules.loyal_max_recency_days, rules.potential_max_recency_days,
            rules.at_risk_max_recency_days}}
        f_window = np.bincount(tx.cust[in_window], minlength=n)
        spend_now = np.bincount(tx.cust[in_window], weights=amount[in_window], minlength=n)
        prev = ~in_window & (age <= 2 * window)
        spend_prev = np.bincount(tx.cust[prev], weights=amount[prev], minlength=n)
    else:
        purchases = f_window = np.zeros(n, dtype=np.int64)
        spend_now = spend_prev = np.zeros(n)
        recent = dict.fromkeys((rules.champions_max_recency_days, rules.loyal_max_recency_days,
                                rules.potential_max_recency_days, rules.at_risk_max_recency_days),
                               np.zeros(n, dtype=bool))

    stage_codes = codes_of(ev.frame["stage"], FUNNEL_STAGES, other=False)
    ok = stage_codes >= 0
    if not ok.all():
        ev = Rows(ev.cust[ok], ev.ts[ok], ev.frame.loc[ok])
        stage_codes = stage_codes[ok]
    aware = np.bincount(ev.cust, minlength=n) > 0
    interested = np.bincount(ev.cust[stage_codes >= 1], minlength=n) > 0
    rfm, lifecycle, tier_now, tier_prev = derive_groups(rules, purchases, f_window, recent, aware, interested,
                                                        spend_now, spend_prev)

    return Features(
        rules=rules, n=n, rfm=rfm, lifecycle=lifecycle, tier_now=tier_now, tier_prev=tier_prev,
        spend_now=spend_now, spend_prev=spend_prev, purchases=purchases, customers=customers,
        transactions=tx, events=ev, event_stage=stage_codes.astype(np.int8),
        tables=tuple(data.tables()), timezone=partner_zone(data),
    )


def derive_groups(rules: FeatureRules, purchases: np.ndarray, f_window: np.ndarray, recent: dict[int, np.ndarray],
                  aware: np.ndarray, interested: np.ndarray, spend_now: np.ndarray,
                  spend_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """RFM segment, lifecycle stage and LTV tier (now and a window earlier) from per-customer aggregates, by the
    declared rules. One definition for the pandas path and the engine path (:mod:`.customer_scan`).

    ``recent[d]``: a purchase in the last ``d`` days before ``as_of``; ``aware``/``interested``: any funnel event /
    one past exposure in the events window."""
    n = len(purchases)
    rfm = np.full(n, RFM_SEGMENTS.index("hibernating"), dtype=np.int8)
    conditions = [  # first match wins, in this order
        ("champions", recent[rules.champions_max_recency_days] & (f_window >= rules.champions_min_purchases)),
        ("loyal", recent[rules.loyal_max_recency_days] & (f_window >= rules.loyal_min_purchases)),
        ("potential", recent[rules.potential_max_recency_days]),
        ("at_risk", recent[rules.at_risk_max_recency_days]),
    ]
    assigned = np.zeros(n, dtype=bool)
    for name, cond in conditions:
        rfm[cond & ~assigned] = RFM_SEGMENTS.index(name)
        assigned |= cond

    lifecycle = np.zeros(n, dtype=np.int8)
    lifecycle[aware] = 1
    lifecycle[interested] = 2
    lifecycle[purchases >= 1] = 3
    lifecycle[f_window >= rules.lifecycle_loyal_min_purchases] = 4

    def tier(spend: np.ndarray) -> np.ndarray:
        t = np.searchsorted(np.asarray(rules.ltv_tier_bounds), spend, side="right").astype(np.int8) + 1
        t[spend <= 0] = 0
        return t

    return rfm, lifecycle, tier(spend_now), tier(spend_prev)


def recency_days(rules: FeatureRules) -> tuple[int, ...]:
    """The distinct "purchase in the last N days" thresholds the RFM rules use."""
    return tuple(sorted({rules.champions_max_recency_days, rules.loyal_max_recency_days,
                         rules.potential_max_recency_days, rules.at_risk_max_recency_days}))


def partner_zone(data: PartnerData) -> str:
    """The partner's own time zone from its data view (``meta["timezone"]``), UTC when it states none."""
    return checked_zone(str(data.meta.get("timezone") or UTC_ZONE), data.partner_id)


def checked_zone(zone: str, partner_id: str) -> str:
    """``zone`` as an IANA name (a "local" zone read as UTC); an unknown one is a ConfigError naming the partner."""
    try:
        return check_zone(zone) if zone != LOCAL else UTC_ZONE
    except ValueError as exc:
        raise ConfigError(f"partner {partner_id}: {exc}") from None



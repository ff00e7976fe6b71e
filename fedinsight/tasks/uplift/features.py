"""A campaign's audience as the uplift model sees it: each exposed customer's arm, conversion and features.

Why the features stop at each customer's own exposure: what the model learns must be known *before* an offer is
sent (else it would learn from the campaign's own effect). Each feature is a fixed, public transform of the
customer's purchases before that moment, ``log1p(value) / log1p(public cap)`` in [0, 1], so every partner
means the same thing by each number and nothing is learnt from one partner's data to scale another's.

The audience: the campaign's ``exposure`` rows in the job's arms (control and offers); one arm per customer
(the first exposure's; exposures at the same instant go to the arm listed first in the job, so the choice never
depends on row order); ``converted`` = a ``convert`` row of the same campaign at or after the exposure. Rows of
other arms are not part of the job and are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError

FEATURES: tuple[tuple[str, float], ...] = (
    ("recency", 730.0),  # days since the last purchase (reversed: 1 = bought the day before)
    ("frequency", 50.0),  # purchases in the 365 days before exposure
    ("monetary", 5_000.0),  # spend in the 365 days before exposure
    ("basket", 1_000.0),  # mean order value over all purchases before exposure
    ("tenure", 3_650.0),  # days since the first purchase
)
"""Feature names and their public caps."""
NAMES: tuple[str, ...] = tuple(n for n, _ in FEATURES)
YEAR = pd.Timedelta(days=365)
US_PER_DAY = 86_400 * 1_000_000
"""Microseconds in a day: durations are counted in whole microseconds (the engines' unit) and turned into days by
one division on both paths (:func:`days`), so the pandas path and the engine give the same float."""


@dataclass(frozen=True)
class Audience:
    """One partner's campaign audience (rows: customers, in ``ids`` order)."""

    ids: pd.Index  # the view's customer tokens
    arm: np.ndarray  # index into the job's arms (0 = control)
    converted: np.ndarray  # 0/1
    x: np.ndarray  # unit-scale features (customers x len(FEATURES))
    order_value: np.ndarray  # mean order value before exposure (raw money, 0 without purchases)
    spend_year: np.ndarray  # spend in the 365 days before exposure (raw money)
    orders: np.ndarray  # purchases before exposure (all time): how much the mean order value is worth

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, mask: np.ndarray) -> Audience:
        return Audience(self.ids[mask], self.arm[mask], self.converted[mask], self.x[mask], self.order_value[mask],
                        self.spend_year[mask], self.orders[mask])


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def exposures(events: pd.DataFrame | None, campaign: str, arms: tuple[str, ...]) -> pd.DataFrame:
    """Per exposed customer: ``arm`` (index into ``arms``), ``exposed_at``, ``converted`` (ConfigError when the
    campaign has no exposures here or an arm has none: the job cannot compare it, said before any budget)."""
    if events is None or "arm" not in events.columns:
        raise ConfigError(f"uplift needs an events table with an 'arm' column (campaign '{campaign}': exposure and "
                          "convert rows, one arm per customer)")
    ev = events[events["campaign"].astype(str) == campaign]
    stamps = _utc(ev["timestamp"])
    exp = ev[(ev["stage"].astype(str) == "exposure") & ev["arm"].astype(str).isin(arms)]
    if exp.empty:
        raise ConfigError(f"campaign '{campaign}' has no exposures in arms {', '.join(arms)} at this partner")
    arm_index = {a: i for i, a in enumerate(arms)}
    exp = exp.assign(exposed_at=stamps[exp.index], arm_i=exp["arm"].astype(str).map(arm_index).astype(int))
    first = exp.sort_values(["exposed_at", "arm_i"], kind="stable").groupby("customer_id", sort=True).first()
    out = pd.DataFrame({"arm": first["arm_i"].astype(int), "exposed_at": first["exposed_at"]})
    check_arms(out["arm"].to_numpy(int), campaign, arms)
    conv = ev[ev["stage"].astype(str) == "convert"]
    conv_at = stamps[conv.index].groupby(conv["customer_id"]).max()
    seen = conv_at.reindex(out.index)
    out["converted"] = (seen.notna() & (seen >= out["exposed_at"])).astype(float)
    return out


def check_arms(arm: np.ndarray, campaign: str, arms: tuple[str, ...]) -> None:
    """ConfigError when an arm of the job has no exposed customer here (the job could not compare it)."""
    missing = [a for i, a in enumerate(arms) if not (arm == i).any()]
    if missing:
        raise ConfigError(f"campaign '{campaign}': arm(s) {', '.join(missing)} have no exposures at this partner "
                          "(check --control and --offer-costs against the campaign's arm values)")


def days(delta: pd.Series) -> pd.Series:
    """Durations in days, from whole microseconds (what the engine scans count): one formula on both paths."""
    micro = delta.to_numpy().astype("timedelta64[us]").astype(np.int64)
    return pd.Series(micro / US_PER_DAY, index=delta.index)


def scale(raw: np.ndarray, cap: float) -> np.ndarray:
    """``log1p(raw) / log1p(cap)`` clipped to [0, 1] (negative values count as 0)."""
    return np.clip(np.log1p(np.maximum(np.asarray(raw, dtype=float), 0.0)) / math.log1p(cap), 0.0, 1.0)


def audience(events: pd.DataFrame | None, transactions: pd.DataFrame | None, campaign: str,
             arms: tuple[str, ...]) -> Audience:
    """The campaign's exposed customers with their features from purchases strictly before their exposure."""
    exp = exposures(events, campaign, arms)
    x, order_value, spend_year, orders = features_at(transactions, exp["exposed_at"])
    return Audience(exp.index, exp["arm"].to_numpy(int), exp["converted"].to_numpy(float), x, order_value,
                    spend_year, orders)


def features_at(transactions: pd.DataFrame | None,
                reference: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(unit features, mean order value, spend in the year before, number of purchases) of the customers in
    ``reference``'s index, from their purchases strictly before their own reference time (UTC)."""
    n = len(reference)
    orders = np.zeros(n)
    raw = empty_raw(n)
    if transactions is not None and len(transactions):
        tx = transactions[["customer_id", "timestamp", "amount"]]
        tx = tx.assign(timestamp=_utc(tx["timestamp"]),
                       amount=pd.to_numeric(tx["amount"], errors="coerce").fillna(0.0).clip(lower=0.0))
        tx = tx.merge(reference.rename("exposed_at"), left_on="customer_id", right_index=True)
        tx = tx[tx["timestamp"] < tx["exposed_at"]]
        recent = tx[tx["timestamp"] >= tx["exposed_at"] - YEAR]
        g = tx.groupby("customer_id")
        cols = {"recency": days(g["exposed_at"].first() - g["timestamp"].max()),
                "frequency": recent.groupby("customer_id").size(),
                "monetary": recent.groupby("customer_id")["amount"].sum(),
                "basket": g["amount"].mean(),
                "tenure": days(g["exposed_at"].first() - g["timestamp"].min())}
        orders = g.size().reindex(reference.index).fillna(0.0).to_numpy(float)
        for name, col in cols.items():
            raw[name] = col.reindex(reference.index).fillna(raw[name][0] if name == "recency" else 0.0).to_numpy(
                float)
    return unit_features(raw), raw["basket"], raw["monetary"], orders


def empty_raw(n: int) -> dict[str, np.ndarray]:
    """The raw features of ``n`` customers without a purchase before their reference time."""
    raw = {name: np.zeros(n) for name in NAMES}
    raw["recency"] = np.full(n, FEATURES[0][1])  # never bought: as lapsed as the cap says
    return raw


def unit_features(raw: dict[str, np.ndarray]) -> np.ndarray:
    """The model's inputs from the raw features: each scaled by its public cap, recency reversed."""
    x = np.column_stack([scale(raw[name], cap) for name, cap in FEATURES])
    x[:, 0] = 1.0 - x[:, 0]
    return x

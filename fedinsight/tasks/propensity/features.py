"""Per-customer features and labels as of a cutoff, computed on the partner's own transactions.

Why a cutoff: propensity and LTV are predictions about the future, so features may only use purchases
before the cutoff (the *calibration* period) and labels only purchases in the *holdout* window after
it. For CDNOW this is the protocol of Fader, Hardie & Lee (2005): calibration 1997-01-01..1997-09-30,
holdout 1997-10-01..1998-06-30.

Why fixed, public scaling to [0, 1] (:func:`unit_features`): every value a customer contributes to the
federated feature statistics must be bounded for the DP noise to be calibrated, and the bounds must
not come from the data. Days are divided by the calibration length; counts and money go through
``log1p`` and are divided by ``log1p`` of a public cap. The *shared* standardisation on top of this is
fitted from noisy federated sums (see :mod:`fedinsight.models.propensity`), never per partner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError, DataValidationError, Problem
from fedinsight.data.synth import SynthConfig

FEATURES: tuple[str, ...] = (
    "frequency",  # repeat purchase days (distinct purchase days - 1), as in BG/NBD
    "recency",  # days from first to last purchase day (t_x)
    "tenure",  # days from first purchase to the cutoff (T)
    "monetary_total",
    "monetary_mean",  # spend per purchase day
    "first_amount",  # spend on the first purchase day
    "quantity",  # units bought
    "days_since_last",  # T - t_x
    "regularity",  # coefficient of variation of the gaps between purchase days (0 with < 2 gaps)
    "dormancy",  # frequency x log((T + 28) / (t_x + 28)): the BG/NBD odds of having dropped out, in one number
)
DORMANCY_DAYS = 28.0
LABELS: tuple[str, ...] = ("buys_again", "churn", "spend")


@dataclass(frozen=True)
class LabelWindow:
    """Calibration ``[start, cutoff)`` for features, holdout ``[cutoff, end)`` for labels."""

    start: pd.Timestamp
    cutoff: pd.Timestamp
    end: pd.Timestamp

    def __post_init__(self) -> None:
        for name in ("start", "cutoff", "end"):
            object.__setattr__(self, name, pd.Timestamp(getattr(self, name)))
        if not self.start < self.cutoff < self.end:
            raise ConfigError(f"need start < cutoff < end (got {self.start}, {self.cutoff}, {self.end})")

    @property
    def calibration_days(self) -> float:
        return (self.cutoff - self.start) / pd.Timedelta(days=1)

    @property
    def holdout_days(self) -> float:
        return (self.end - self.cutoff) / pd.Timedelta(days=1)

    def to_config(self) -> dict[str, str]:
        return {"window-start": self.start.isoformat(), "window-cutoff": self.cutoff.isoformat(),
                "window-end": self.end.isoformat()}

    @classmethod
    def from_config(cls, config: dict[str, object]) -> LabelWindow:
        def bound(k: str) -> pd.Timestamp:  # model files spell them window-<k>, job options <k>
            return pd.Timestamp(str(config[f"window-{k}"] if f"window-{k}" in config else config[k]))

        try:
            return cls(bound("start"), bound("cutoff"), bound("end"))
        except KeyError as exc:
            raise ConfigError(f"job config lacks {exc.args[0]}") from exc


CDNOW_WINDOW = LabelWindow(pd.Timestamp("1997-01-01"), pd.Timestamp("1997-10-01"), pd.Timestamp("1998-07-01"))
"""Fader-Hardie-Lee: 39 calibration weeks (to 1997-09-30) and 39 holdout weeks (to 1998-06-30)."""


def synthetic_window() -> LabelWindow:
    """The window the synthetic generator planted its propensity signal on (its ``start/cutoff/end``)."""
    cfg = SynthConfig()
    return LabelWindow(pd.Timestamp(cfg.start), pd.Timestamp(cfg.cutoff), pd.Timestamp(cfg.end))


@dataclass(frozen=True)
class FeatureCaps:
    """Public bounds for :func:`unit_features`; larger values are clamped (say so in the docs)."""

    amount: float = 10_000.0  # one purchase day's spend
    total_amount: float = 100_000.0  # calibration spend and holdout spend
    quantity: float = 1_000.0

    @property
    def log_unit(self) -> float:
        """One ``log1p`` unit of money on the unit spend scale of :func:`unit_spend`."""
        return 1.0 / float(np.log1p(self.total_amount))

    def to_config(self) -> dict[str, float]:
        return {"cap-amount": self.amount, "cap-total-amount": self.total_amount, "cap-quantity": self.quantity}

    @classmethod
    def from_config(cls, config: dict[str, object]) -> FeatureCaps:
        return cls(*(float(config.get(k, d)) for k, d in  # type: ignore[arg-type]
                     zip(("cap-amount", "cap-total-amount", "cap-quantity"),
                         (cls.amount, cls.total_amount, cls.quantity), strict=True)))


def customer_table(transactions: pd.DataFrame, window: LabelWindow) -> pd.DataFrame:
    """One row per customer with a purchase in the calibration period: raw features and labels.

    Indexed by ``customer_id`` (sorted). Customers whose first purchase is after the cutoff cannot be
    scored as of the cutoff and are left out.
    """
    missing = [c for c in ("customer_id", "timestamp", "amount", "quantity") if c not in transactions.columns]
    if missing:
        raise DataValidationError(Problem("transactions", f"missing column(s) {', '.join(missing)}"))
    tx = transactions[["customer_id", "timestamp", "amount", "quantity"]]
    ts = pd.to_datetime(tx["timestamp"])
    calib = tx[(ts >= window.start) & (ts < window.cutoff)].assign(day=ts.dt.normalize())
    hold = tx[(ts >= window.cutoff) & (ts < window.end)]
    if calib.empty:
        return pd.DataFrame(columns=[*FEATURES, *LABELS], index=pd.Index([], name="customer_id"), dtype=float)
    days = calib.groupby(["customer_id", "day"], sort=True).agg(amount=("amount", "sum"),
                                                                  quantity=("quantity", "sum")).reset_index()
    grp = days.groupby("customer_id", sort=True)
    first, last = grp["day"].min(), grp["day"].max()
    n_days = grp.size()
    day_len = pd.Timedelta(days=1)
    out = pd.DataFrame(index=n_days.index)
    out["frequency"] = (n_days - 1).astype(float)
    out["recency"] = (last - first) / day_len
    out["tenure"] = (window.cutoff - first) / day_len
    out["monetary_total"] = grp["amount"].sum()
    out["monetary_mean"] = out["monetary_total"] / n_days
    out["first_amount"] = grp["amount"].first()
    out["quantity"] = grp["quantity"].sum().astype(float)
    out["days_since_last"] = out["tenure"] - out["recency"]
    gaps = grp["day"].diff().dropna() / day_len
    sum_sq = (gaps**2).groupby(days.loc[gaps.index, "customer_id"]).sum().reindex(out.index, fill_value=0.0)
    out["regularity"] = gap_regularity((n_days - 1).to_numpy(dtype=np.int64), out["recency"].to_numpy(dtype=float),
                                       sum_sq.to_numpy(dtype=float))
    out["dormancy"] = out["frequency"] * np.log((out["tenure"] + DORMANCY_DAYS) / (out["recency"] + DORMANCY_DAYS))
    spend = hold.groupby("customer_id")["amount"].sum()
    out["spend"] = spend.reindex(out.index, fill_value=0.0).astype(float)
    out["buys_again"] = (hold.groupby("customer_id").size().reindex(out.index, fill_value=0) > 0).astype(float)
    out["churn"] = 1.0 - out["buys_again"]
    out.index = out.index.astype(str)
    out.index.name = "customer_id"
    return out[[*FEATURES, *LABELS]]


def gap_regularity(n_gaps: np.ndarray, span_days: np.ndarray, sum_sq_gaps: np.ndarray) -> np.ndarray:
    """The coefficient of variation of a customer's gaps between purchase days (0 with fewer than two gaps), from
    the number of gaps, their sum (last minus first day) and their sum of squares. One formula for the pandas path
    and the engine's scan (which returns exactly these integers), so both give the same bits."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = span_days / n_gaps
        var = (sum_sq_gaps - n_gaps * mean**2) / (n_gaps - 1)
        cv = np.sqrt(np.clip(var, 0.0, None)) / mean
    return np.where((n_gaps >= 2) & np.isfinite(cv), cv, 0.0)


def unit_features(table: pd.DataFrame, window: LabelWindow, caps: FeatureCaps | None = None) -> np.ndarray:
    """Raw features mapped to [0, 1] by fixed public transforms (see the module docstring)."""
    caps = caps or FeatureCaps()
    days = max(window.calibration_days, 1.0)

    def log_unit(col: str, cap: float) -> np.ndarray:
        return np.log1p(np.clip(table[col].to_numpy(float), 0, cap)) / np.log1p(cap)

    cols = {
        "frequency": log_unit("frequency", days),
        "recency": table["recency"].to_numpy(float) / days,
        "tenure": table["tenure"].to_numpy(float) / days,
        "monetary_total": log_unit("monetary_total", caps.total_amount),
        "monetary_mean": log_unit("monetary_mean", caps.amount),
        "first_amount": log_unit("first_amount", caps.amount),
        "quantity": log_unit("quantity", caps.quantity),
        "days_since_last": table["days_since_last"].to_numpy(float) / days,
        "regularity": np.clip(table["regularity"].to_numpy(float), 0, 3) / 3,
        "dormancy": log_unit("dormancy", days * np.log((days + DORMANCY_DAYS) / DORMANCY_DAYS)),
    }
    unit = np.column_stack([cols[f] for f in FEATURES]) if len(table) else np.zeros((0, len(FEATURES)))
    return np.clip(unit, 0.0, 1.0)


def unit_spend(spend: np.ndarray, caps: FeatureCaps | None = None) -> np.ndarray:
    """Holdout spend mapped to [0, 1]: ``log1p(spend) / log1p(cap)`` (the LTV regression target)."""
    cap = (caps or FeatureCaps()).total_amount
    return np.log1p(np.clip(np.asarray(spend, float), 0, cap)) / np.log1p(cap)


def spend_from_unit(unit: np.ndarray, caps: FeatureCaps | None = None) -> np.ndarray:
    """Inverse of :func:`unit_spend`."""
    cap = (caps or FeatureCaps()).total_amount
    return np.expm1(np.asarray(unit, float) * np.log1p(cap))

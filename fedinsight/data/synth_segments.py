"""Synthetic purchases with planted customer segments of known centres (ground truth for the segments task).

Why a separate generator: the main synthetic retailer (:mod:`fedinsight.data.synth`) draws purchase rates from
wide gamma distributions, so its hidden segments overlap heavily in recency/frequency/monetary and no clustering,
private or not, can recover them. A test of "does DP k-means find the segments that are really there" needs
segments that *are* there: here every customer belongs to one of :data:`CENTRES`, given in the segments task's
own feature space (recency, frequency, monetary scaled by :mod:`fedinsight.tasks.segments.features`' public
caps), and gets purchases that land its vector near that centre.

Separation (stated so the benchmark's ARI goal means something): the five centres are at least
:data:`MIN_DISTANCE` (0.41) apart in [0, 1]^3; a customer's planted vector is the centre plus Gaussian noise of
sd :data:`SPREAD` (0.05) per coordinate, i.e. 4.1 sd from the half-way plane to the nearest other centre, so
the nearest-centre (Bayes-optimal, equal spherical clusters) assignment is wrong for about Phi(-4.1) = 2e-5 of
customers per neighbour. Frequency is a whole number of purchases (``round(expm1(...))``, at least 1), which
moves the frequency coordinate by half a purchase at most (up to 0.07 for one- or two-purchase customers, about
0.02 on average; a planted value under half a purchase, about 1 % of customers, becomes one purchase); recency is
exact to the second and spend to the cent. Non-private k-means recovers the planted labels with ARI above 0.99.

How a customer's purchases are drawn: its last purchase is ``recency`` days before ``as_of`` (the day after
``end``), its other purchases uniform over the window before that, and its total spend split over its purchases
by a Dirichlet draw (each purchase at least 0.01). Customers split evenly (at random) over the partners; the
partner folders are plain canonical tables (``customers``, ``transactions`` as CSV), as a user's own mapped
exports look once read through their mapping; the truth (centres, labels file) is written outside them.
Everything is deterministic in ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.planted import write_federation

FEATURES = ("recency", "frequency", "monetary")
"""The segments task's default features; the centres below are in their scaled [0, 1] space."""
CAPS = {"recency": 730.0, "frequency": 50.0, "monetary": 5_000.0}
"""The public caps of :mod:`fedinsight.tasks.segments.features` (a unit test checks they agree)."""

CENTRES = np.array([
    [0.80, 0.75, 0.85],  # very recent, frequent, top spend
    [0.85, 0.25, 0.30],  # very recent, one or two purchases, low spend (new customers)
    [0.25, 0.65, 0.75],  # lapsed, frequent, high spend (at risk)
    [0.15, 0.20, 0.30],  # lapsed, one-off, low spend (hibernating)
    [0.55, 0.45, 0.50],  # recent, repeat, mid spend
])
NAMES = ("champions", "new", "at risk", "hibernating", "steady")
SHARES = np.array([0.10, 0.20, 0.15, 0.30, 0.25])
SPREAD = 0.05
"""Per-coordinate sd of a customer's planted vector around its centre."""
MIN_DISTANCE = float(min(np.linalg.norm(CENTRES[i] - CENTRES[j]) for i in range(5) for j in range(i)))
"""The smallest distance between two planted centres (0.41)."""


@dataclass(frozen=True)
class SegmentsConfig:
    """What to generate (defaults: the segments benchmark's 100,000 customers over 10 partners)."""

    customers: int = 100_000
    partners: int = 10
    seed: int = 0
    start: str = "2023-01-01"
    end: str = "2025-12-31"

    def check(self) -> None:
        if self.customers < self.partners or self.partners < 1:
            raise ConfigError(f"need at least one customer per partner (got {self.customers} customers, "
                              f"{self.partners} partners)")
        if pd.Timestamp(self.end) - pd.Timestamp(self.start) < pd.Timedelta(days=CAPS["recency"]):
            raise ConfigError(f"the window {self.start}..{self.end} must span at least {CAPS['recency']:g} days")

    @property
    def as_of(self) -> str:
        """The reference date the planted recency is measured from (what ``simulate`` infers from the window)."""
        return (pd.Timestamp(self.end) + pd.Timedelta(days=1)).date().isoformat()


def _raw(scaled: np.ndarray, cap: float) -> np.ndarray:
    """Inverse of the task's ``log1p(raw) / log1p(cap)`` scale."""
    return np.expm1(np.clip(scaled, 0.0, 1.0) * math.log1p(cap))


def truth(config: SegmentsConfig) -> dict[str, Any]:
    """The planted facts: centres (scaled and raw), shares, spread, separation, the window."""
    config.check()
    typical = [{"recency_days": round(float(_raw(1 - c[0], CAPS["recency"])), 1),
                "purchases": round(float(_raw(c[1], CAPS["frequency"])), 2),
                "spend": round(float(_raw(c[2], CAPS["monetary"])), 2)} for c in CENTRES]
    return {"config": asdict(config), "features": list(FEATURES), "caps": CAPS, "as_of": config.as_of,
            "window": {"start": config.start, "end": config.end}, "names": list(NAMES),
            "centres": CENTRES.tolist(), "typical": typical, "shares": SHARES.tolist(), "spread": SPREAD,
            "min_centre_distance": MIN_DISTANCE, "separation_sd": MIN_DISTANCE / 2 / SPREAD}


def generate(config: SegmentsConfig) -> tuple[dict[str, dict[str, pd.DataFrame]], pd.DataFrame, dict[str, Any]]:
    """``{partner: {"customers", "transactions"}}``, the labels (customer_id, partner, segment, planted vector)
    and :func:`truth`."""
    facts = truth(config)
    rng = np.random.default_rng([config.seed, 7])
    n = config.customers
    label = rng.choice(len(CENTRES), size=n, p=SHARES)
    vec = np.clip(CENTRES[label] + SPREAD * rng.standard_normal((n, 3)), 0.0, 1.0)
    days = _raw(1.0 - vec[:, 0], CAPS["recency"])
    count = np.maximum(1, np.rint(_raw(vec[:, 1], CAPS["frequency"]))).astype(int)
    spend = np.maximum(_raw(vec[:, 2], CAPS["monetary"]), 0.01 * count)
    as_of = pd.Timestamp(config.as_of)
    span = (as_of - pd.Timestamp(config.start)).total_seconds()
    last = np.maximum(np.rint(days * 86_400.0), 1.0)  # seconds before as_of: strictly before it
    cust = np.repeat(np.arange(n), count)
    first_row = np.concatenate([[0], np.cumsum(count)[:-1]])
    is_last = np.zeros(cust.size, dtype=bool)
    is_last[first_row] = True
    before = np.where(is_last, last[cust], last[cust] + rng.random(cust.size) * np.maximum(span - last[cust], 0.0))
    shares = rng.gamma(2.0, 1.0, cust.size)
    shares /= np.bincount(cust, weights=shares)[cust]
    amount = np.maximum(np.floor(shares * (spend[cust] - 0.01 * count[cust]) * 100) / 100 + 0.01, 0.01)
    stamps = as_of - pd.to_timedelta(np.rint(before).astype(np.int64), unit="s")
    partner_of = rng.permutation(np.arange(n) % config.partners)
    ids = np.array([f"S{k:07d}" for k in range(n)])
    frames: dict[str, dict[str, pd.DataFrame]] = {}
    for p in range(config.partners):
        own = partner_of[cust] == p
        tx = pd.DataFrame({"transaction_id": [f"T{p:02d}{k:08d}" for k in range(int(own.sum()))],
                           "customer_id": ids[cust[own]], "timestamp": stamps[own].strftime("%Y-%m-%d %H:%M:%S"),
                           "amount": np.round(amount[own], 2), "quantity": 1})
        frames[f"partner-{p:02d}"] = {"customers": pd.DataFrame({"customer_id": ids[partner_of == p],
                                                                 "consent": True}), "transactions": tx}
    labels = pd.DataFrame({"customer_id": ids, "partner": [f"partner-{p:02d}" for p in partner_of],
                           "segment": label, **{f"planted_{f}": vec[:, i] for i, f in enumerate(FEATURES)}})
    return frames, labels, facts


def write_segments(root: str | Path, config: SegmentsConfig) -> dict[str, Any]:
    """One folder per partner under ``root`` (CSV), ``root/ground_truth.json`` and the labels in
    ``root/ground_truth/segments.csv`` (outside every partner folder); returns the truth."""
    frames, labels, facts = generate(config)
    root = write_federation(root, frames, facts)
    (root / "ground_truth").mkdir(parents=True, exist_ok=True)
    labels.to_csv(root / "ground_truth" / "segments.csv", index=False)
    return facts

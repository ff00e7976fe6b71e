"""The additive statistics partners release so that everyone preprocesses the same way.

Why: Flower's fl-tabular example fits a scaler on each client, so the same feature means different
things on different partners and the averaged model is fitted to none of them. Here each partner
releases one fixed-layout vector of *sums* over its training customers (count, sums and sums of squares
of the unit-scale features, buyer count and the buyers' summed unit-scale spend, and a histogram of
unit-scale spend) with Gaussian noise; the coordinator adds the vectors and derives one
:class:`~fedinsight.models.propensity.SharedScaler`, the spend target's centre and the LTV tier thresholds.

Sensitivity: each customer's contribution vector is clipped to L2 norm :data:`STATS_CLIP` before
summing, so adding or removing a customer moves the sum by at most that much. Every coordinate lies in
[0, 1] and the worst case would be ``sqrt(2d + 4)`` (~4.7 for 9 features), but real contributions are
much smaller (CDNOW: median 2.3, 99.9th percentile 2.9); clipping at 3 cuts the noise by a third and
almost never binds. Histograms have a point-mass bin for exactly zero (most customers spend nothing in
the holdout) and ``SPEND_BINS - 1`` equal bins over (0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedinsight.models.propensity import VAR_FLOOR, SharedScaler, TargetScaler

SPEND_BINS = 64
STATS_CLIP = 3.0


def stats_length(n_features: int) -> int:
    return 1 + 2 * n_features + 2 + SPEND_BINS


def stats_sensitivity(n_features: int) -> float:
    """L2 norm bound of one customer's contribution to the statistics vector (after clipping)."""
    return min(STATS_CLIP, math.sqrt(2 * n_features + 4))


def _spend_bin(unit_values: np.ndarray) -> np.ndarray:
    v = np.clip(np.asarray(unit_values, float), 0.0, 1.0)
    return np.where(v <= 0, 0, 1 + np.minimum((v * (SPEND_BINS - 1)).astype(int), SPEND_BINS - 2))


def spend_histogram(unit_values: np.ndarray) -> np.ndarray:
    """Counts over the zero bin plus ``SPEND_BINS - 1`` equal bins of (0, 1]."""
    return np.bincount(_spend_bin(unit_values), minlength=SPEND_BINS).astype(float)


def histogram_quantile(hist: np.ndarray, level: float) -> float:
    """Quantile (unit scale) of a :func:`spend_histogram`; linear within bins, 0 inside the zero bin.

    Negative (noisy) counts are treated as 0.
    """
    h = np.clip(np.asarray(hist, float), 0.0, None)
    total = h.sum()
    if total <= 0:
        return 0.0
    cum = np.cumsum(h) / total
    if level <= cum[0]:
        return 0.0
    b = int(np.searchsorted(cum, level, side="left"))
    b = min(max(b, 1), SPEND_BINS - 1)
    lo_cum = cum[b - 1]
    frac = 0.0 if h[b] <= 0 else (level - lo_cum) / (h[b] / total)
    width = 1.0 / (SPEND_BINS - 1)
    return float((b - 1 + np.clip(frac, 0.0, 1.0)) * width)


def histogram_cdf(hist: np.ndarray, unit_value: float) -> float:
    """Share of mass at or below ``unit_value`` (inverse of :func:`histogram_quantile`)."""
    h = np.clip(np.asarray(hist, float), 0.0, None)
    total = h.sum()
    if total <= 0:
        return 0.0
    if unit_value <= 0:
        return float(h[0] / total)
    pos = unit_value * (SPEND_BINS - 1)
    b = min(int(pos), SPEND_BINS - 2)
    return float((h[0] + h[1:1 + b].sum() + h[1 + b] * (pos - b)) / total)


def contributions(unit: np.ndarray, buys: np.ndarray, unit_spend: np.ndarray) -> np.ndarray:
    """One row per customer: what it adds to the statistics vector, clipped to L2 norm ``STATS_CLIP``."""
    unit = np.clip(np.asarray(unit, float), 0.0, 1.0)
    y = np.asarray(buys, float).reshape(-1, 1)
    t = np.clip(np.asarray(unit_spend, float), 0.0, 1.0)
    onehot = np.zeros((len(unit), SPEND_BINS))
    if len(unit):
        onehot[np.arange(len(unit)), _spend_bin(t)] = 1.0
    rows = np.hstack([np.ones((len(unit), 1)), unit, unit**2, y, y * t.reshape(-1, 1), onehot])
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows * np.minimum(1.0, STATS_CLIP / np.maximum(norms, 1e-12))


def partner_stats(unit: np.ndarray, buys: np.ndarray, unit_spend: np.ndarray) -> np.ndarray:
    """The exact statistics vector of one partner's training customers (noise is added by the caller)."""
    return contributions(unit, buys, unit_spend).sum(axis=0)


@dataclass(frozen=True)
class PooledStats:
    """The sum of all partners' (noisy) statistics vectors, and what it implies."""

    n: float
    sums: np.ndarray
    sums_sq: np.ndarray
    buyers: float
    spend_sum: float
    spend_hist: np.ndarray
    noise_std: float = 0.0  # std of the noise on each coordinate of the *sum*

    @classmethod
    def from_vectors(cls, vectors: list[np.ndarray], n_features: int, noise_std_each: float = 0.0) -> PooledStats:
        total = np.sum([np.asarray(v, float) for v in vectors], axis=0)
        d = n_features
        return cls(n=float(total[0]), sums=total[1:1 + d], sums_sq=total[1 + d:1 + 2 * d],
                   buyers=float(total[1 + 2 * d]), spend_sum=float(total[2 + 2 * d]), spend_hist=total[3 + 2 * d:],
                   noise_std=float(noise_std_each) * math.sqrt(len(vectors)))

    def variance_floor(self, n: float | None = None) -> float:
        """Variances below ~2 noise standard errors are not trustworthy: floor them there.

        Over-estimating a feature's spread only shrinks it (the model's weight grows to compensate);
        under-estimating it by noise would blow the feature up and wreck clipped DP-SGD.
        """
        n = max(self.n if n is None else n, 1.0)
        return max(VAR_FLOOR, 2.0 * self.noise_std / n)

    def scaler(self) -> SharedScaler:
        return SharedScaler.from_sums(self.n, self.sums, self.sums_sq, var_floor=self.variance_floor())

    def target(self, scale: float) -> TargetScaler:
        """Centre of the buyers' unit-scale spend; ``scale`` is public (one log-unit of money)."""
        return TargetScaler.centred(self.buyers, self.spend_sum, scale)

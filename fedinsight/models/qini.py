"""Qini curves from (score bin x arm x converted) counts: the uplift evaluation, as post-processing.

Why counts: a partner cannot send its held-out customers' scores and outcomes, but a histogram of them by
public score bins is a bounded-sensitivity release (each customer in one cell). The Qini curve only needs, for
the customers ranked by predicted uplift, cumulative treated and control counts and conversions -- so it can be
computed from the summed (noisy) bins, with customers in one bin treated as ties.

Definitions (Radcliffe 2007), with customers sorted by score, highest first, and phi the share targeted:
``Q(phi) = Y_T(phi) - Y_C(phi) x N_T(phi) / N_C(phi)`` (incremental conversions among the treated of the
top phi); the random-targeting line goes straight from 0 to ``Q(1)``; the **Qini coefficient** is the area
between the curve and that line, divided by the number of customers (so it reads as incremental conversions per
customer, averaged over targeting depths). Noisy negative counts are read as 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QiniCurve:
    """Points of a Qini curve: ``share`` targeted (0 first, 1 last) and incremental conversions ``gain``."""

    share: np.ndarray
    gain: np.ndarray
    customers: float

    @property
    def coefficient(self) -> float:
        """Area between the curve and the random line, per customer (trapezoids between the points)."""
        if self.customers <= 0:
            return float("nan")
        random = self.share * self.gain[-1]
        return float(np.trapezoid(self.gain - random, self.share) / self.customers)

    def gain_at(self, share: float) -> float:
        """Incremental conversions when targeting the top ``share`` (linear between points)."""
        return float(np.interp(share, self.share, self.gain))

    def targeting_ratio(self, share: float) -> float:
        """Incremental conversions of the top ``share`` by the model over those of a random ``share``."""
        random = share * float(self.gain[-1])
        return self.gain_at(share) / random if random > 0 else float("nan")


def curve_from_bins(n_t: np.ndarray, y_t: np.ndarray, n_c: np.ndarray, y_c: np.ndarray) -> QiniCurve:
    """The curve of bins given highest score first (treated/control counts and conversions per bin)."""
    arrays = [np.maximum(np.asarray(a, dtype=float), 0.0) for a in (n_t, y_t, n_c, y_c)]
    nt, yt, nc, yc = (np.concatenate([[0.0], np.cumsum(a)]) for a in arrays)
    yt, yc = np.minimum(yt, nt), np.minimum(yc, nc)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = yt - np.where(nc > 0, yc * nt / nc, 0.0)
    total = nt[-1] + nc[-1]
    share = (nt + nc) / total if total > 0 else np.linspace(0.0, 1.0, nt.size)
    return QiniCurve(share, gain, float(total))


def bin_counts(score: np.ndarray, treated: np.ndarray, converted: np.ndarray,
               edges: np.ndarray) -> np.ndarray:
    """Rows (n_t, y_t, n_c, y_c) x bins, bins ordered highest score first (``edges``: ascending inner edges)."""
    bins = len(edges) + 1
    idx = bins - 1 - np.searchsorted(np.asarray(edges), np.asarray(score, dtype=float), side="right")
    t = np.asarray(treated, dtype=bool)
    y = np.asarray(converted, dtype=float)
    out = np.zeros((4, bins))
    out[0] = np.bincount(idx[t], minlength=bins)
    out[1] = np.bincount(idx[t], weights=y[t], minlength=bins)
    out[2] = np.bincount(idx[~t], minlength=bins)
    out[3] = np.bincount(idx[~t], weights=y[~t], minlength=bins)
    return out


def exact_curve(score: np.ndarray, treated: np.ndarray, converted: np.ndarray) -> QiniCurve:
    """The curve on individual customers (equal scores are one tie group): the reference for the binned one."""
    s = np.asarray(score, dtype=float)
    levels = np.unique(s)[::-1]
    idx = np.searchsorted(-levels, -s)  # position of each customer's score among the levels, highest first
    t = np.asarray(treated, dtype=bool)
    y = np.asarray(converted, dtype=float)
    k = levels.size
    counts = [np.bincount(idx[m], weights=w, minlength=k) for m, w in
              ((t, None), (t, y[t]), (~t, None), (~t, y[~t]))]
    return curve_from_bins(*counts)

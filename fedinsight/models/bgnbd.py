"""BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"), fitted in-house with scipy.

Why in-house: it is the published peer model our propensity models are compared with, and the
``lifetimes`` package breaks on pandas 3. The model: while alive a customer buys as a Poisson process
with rate lambda ~ Gamma(r, alpha); after each purchase they drop out with probability p ~ Beta(a, b).
Inputs per customer are the calibration summary (x = repeat purchases, t_x = time of the last purchase,
T = time since the first purchase, all measured from the first purchase); the score used for ranking
is the conditional expected number of purchases in the next ``t`` periods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1, logsumexp

from fedinsight.core.errors import ConfigError


@dataclass(frozen=True)
class BGNBD:
    """Fitted BG/NBD parameters (time unit: whatever x, t_x, T were measured in)."""

    r: float
    alpha: float
    a: float
    b: float

    def expected_purchases(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005, eq. 10; valid for a != 1)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        z = t / (alpha + T + t)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
        first = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
        second = np.where(x > 0, a / np.maximum(b + x - 1, 1e-12) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
        return first / (1 + second)

    def probability_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        odds = np.where(x > 0, a / np.maximum(b + x - 1, 1e-12) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
        return 1.0 / (1.0 + odds)


def log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood (FHL 2005, eq. 6), in a numerically stable log-sum-exp form."""
    r, alpha, a, b = params
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    term1 = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        term2 = np.where(x > 0, betaln(a + 1, b + np.maximum(x, 1) - 1) - betaln(a, b)
                         - (r + x) * np.log(alpha + t_x), -np.inf)
    return common + logsumexp(np.stack([term1, term2]), axis=0)


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, *, initial: tuple[float, ...] = (0.5, 5.0, 0.8, 2.5),
              ) -> BGNBD:
    """Maximum-likelihood fit (L-BFGS-B on log-parameters)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if len(x) == 0:
        raise ConfigError("BG/NBD needs at least one customer")
    if np.any(t_x > T + 1e-9) or np.any(x < 0) or np.any((x == 0) & (t_x > 0)):
        raise ConfigError("BG/NBD inputs must satisfy x >= 0, 0 <= t_x <= T and t_x = 0 when x = 0")

    def nll(log_params: np.ndarray) -> float:
        value = -log_likelihood(np.exp(log_params), x, t_x, T).sum()
        return float(value) if np.isfinite(value) else 1e300

    result = minimize(nll, np.log(np.asarray(initial, dtype=float)), method="L-BFGS-B",
                      bounds=[(-10, 10)] * 4)
    r, alpha, a, b = np.exp(result.x)
    if not result.success and not np.isfinite(result.fun):
        raise ConfigError(f"BG/NBD fit did not converge: {result.message}")
    return BGNBD(float(r), float(alpha), float(a), float(b))

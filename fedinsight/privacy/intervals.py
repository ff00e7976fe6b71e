"""Error bars for released numbers: noise standard deviation and a 95 % interval.

Why here: every number an analyst sees must say how noisy it is. A combined count is the sum of K
partners' noisy counts, so its noise is the sum of K independent noises (variances add). For Gaussian
noise that sum is Gaussian (z = 1.96). For Laplace noise it is not; the exact 95 % quantile of a sum of
K i.i.d. Laplace variables (a difference of two Gamma(K) variables) is computed numerically, so a
direct count's interval is exact for either mechanism. Ratios (rates, means, shares, lifts) use the
delta method with a normal quantile -- an approximation that is good once denominators are well above
their noise, which minimum group sizes ensure.

Intervals cover the *exact aggregate of the bounded data* (clamped, capped): the noise is the only
randomness. Where a sampling error is also wanted (A/B tests), it is added explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

Z95 = 1.959963984540054


@lru_cache(maxsize=256)
def laplace_sum_z95(partners: int) -> float:
    """z such that a sum of ``partners`` i.i.d. Laplace noises lies within z standard deviations w.p. 95 %."""
    if partners < 1:
        raise ValueError("partners must be >= 1")
    if partners == 1:
        return math.log(20.0) / math.sqrt(2.0)
    if partners > 60:  # indistinguishable from normal at this precision
        return Z95
    from scipy import integrate, optimize, stats

    gamma = stats.gamma(partners)

    def cdf(t: float) -> float:  # P(G1 - G2 <= t), G1, G2 ~ Gamma(K, 1)
        value, _ = integrate.quad(lambda g: gamma.cdf(t + g) * gamma.pdf(g), max(0.0, -t), math.inf, limit=200)
        return value

    sd = math.sqrt(2.0 * partners)
    t = optimize.brentq(lambda t: cdf(t) - 0.975, 0.5 * sd, 4.0 * sd, xtol=1e-10)
    return t / sd


def noise_z95(mechanism: str, partners: int) -> float:
    """95 % quantile factor (in standard deviations) of the combined noise of ``partners`` partners."""
    return laplace_sum_z95(partners) if mechanism == "laplace" else Z95


@dataclass(frozen=True)
class Estimate:
    """One released number with its error bar."""

    value: float
    noise_sd: float
    ci95: tuple[float, float]
    sampling_sd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "ci95": [self.ci95[0], self.ci95[1]], "noise_sd": self.noise_sd}
        if self.sampling_sd is not None:
            out["sampling_sd"] = self.sampling_sd
        return out


def _clip(x: float, lower: float | None, upper: float | None) -> float:
    if lower is not None:
        x = max(lower, x)
    if upper is not None:
        x = min(upper, x)
    return x


def estimate(value: float, variance: float, z: float = Z95, *, lower: float | None = None,
             upper: float | None = None, sampling_variance: float | None = None) -> Estimate:
    """``value ± z·sd`` (sd from noise and optional sampling variance), clipped to the known range.

    Clipping to a range the truth is known to lie in (counts >= 0, rates in [0, 1]) is post-processing:
    it costs no privacy and never makes an interval miss a value it covered.
    """
    total = max(0.0, variance) + max(0.0, sampling_variance or 0.0)
    half = z * math.sqrt(total)
    return Estimate(
        value=_clip(float(value), lower, upper),
        noise_sd=math.sqrt(max(0.0, variance)),
        ci95=(_clip(value - half, lower, upper), _clip(value + half, lower, upper)),
        sampling_sd=None if sampling_variance is None else math.sqrt(max(0.0, sampling_variance)),
    )


def ratio_variance(num: float, var_num: float, den: float, var_den: float, cov: float = 0.0) -> float:
    """Delta-method variance of num/den (independent noise unless ``cov`` is given)."""
    if den <= 0:
        return math.inf
    r = num / den
    return max(0.0, (var_num + r * r * var_den - 2 * r * cov) / (den * den))


def ratio(num: float, var_num: float, den: float, var_den: float, *, lower: float | None = None,
          upper: float | None = None, cov: float = 0.0) -> Estimate:
    """num/den with a delta-method 95 % interval (callers withhold ratios whose denominator is not positive)."""
    if not den > 0:
        raise ValueError(f"ratio with a non-positive denominator ({den}); withhold it instead")
    return estimate(num / den, ratio_variance(num, var_num, den, var_den, cov), lower=lower, upper=upper)

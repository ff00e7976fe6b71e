"""Splitting one batch's privacy budget across the releases in it.

Why: an analyst asks for a batch of queries at a total (epsilon, delta); each query's noise must be
set so that the *composition* of all of them, as the ledger's accountant computes it, is that total.
Each query gets a share proportional to its weight:

- Gaussian: under RDP, Gaussian releases with noise multipliers ``z_i`` compose exactly like one
  Gaussian with ``1/z² = Σ 1/z_i²``. So ``z`` is calibrated once for the total (epsilon, delta)
  and ``1/z_i² = w_i / z²`` -- the batch costs exactly the total.
- Laplace: query i gets ``epsilon_i = f · w_i · epsilon``; ``f`` is found by bisection so the
  accountant's composed epsilon equals the total (RDP composes many small Laplace releases a little
  better than adding their epsilons, and one Laplace release a little worse).

A multiplier is "noise scale per unit of sensitivity": Laplace ``b = multiplier × L1``, Gaussian
``sigma = multiplier × L2``, the same convention as ``dp_accounting``'s events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.ledger import compose_epsilon
from fedinsight.privacy.mechanisms import Mechanism, gaussian_noise_multiplier


@dataclass(frozen=True)
class QueryNoise:
    """The noise one query is released with."""

    mechanism: Mechanism
    multiplier: float

    @property
    def event(self) -> dp_event.DpEvent:
        """What the ledger records for this release."""
        if self.mechanism == "laplace":
            return dp_event.LaplaceDpEvent(self.multiplier)
        return dp_event.GaussianDpEvent(self.multiplier)

    def epsilon(self, delta: float, accountant: str = "rdp") -> float:
        """This release's own epsilon at ``delta`` (before composition with anything else)."""
        return compose_epsilon([self.event], delta, accountant)


def query_noise(mechanism: str, multiplier: float) -> QueryNoise:
    """Validated :class:`QueryNoise` (what a partner checks a coordinator's request with)."""
    if mechanism not in ("laplace", "gaussian"):
        raise ConfigError(f"unknown mechanism '{mechanism}', expected laplace or gaussian")
    if not (isinstance(multiplier, int | float) and math.isfinite(multiplier) and multiplier > 0):
        raise ConfigError(f"noise multiplier must be a positive number (got {multiplier!r})")
    return QueryNoise(mechanism, float(multiplier))  # type: ignore[arg-type]


def batch_event(noises: Mapping[str, QueryNoise]) -> dp_event.DpEvent:
    """The composed event of a whole batch (one ledger charge, so the batch passes or fails as one)."""
    return dp_event.ComposedDpEvent([n.event for n in noises.values()])


def split_budget(
    weights: Mapping[str, float], epsilon: float, delta: float, mechanism: str = "gaussian", *,
    accountant: str = "rdp",
) -> dict[str, QueryNoise]:
    """Noise per query so that the batch composes to ``epsilon`` at ``delta``."""
    if not weights:
        raise ConfigError("a batch needs at least one query")
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"epsilon must be a positive number (got {epsilon})")
    if not (0 < delta < 1):
        raise ConfigError(f"delta must be in (0, 1) (got {delta})")
    bad = [name for name, w in weights.items() if not (math.isfinite(w) and w > 0)]
    if bad:
        raise ConfigError(f"query weights must be positive numbers ({', '.join(bad)})")
    total = sum(weights.values())
    shares = {name: w / total for name, w in weights.items()}
    if mechanism == "gaussian":
        z = gaussian_noise_multiplier(epsilon, delta)
        return {name: QueryNoise("gaussian", z / math.sqrt(s)) for name, s in shares.items()}
    if mechanism != "laplace":
        raise ConfigError(f"unknown mechanism '{mechanism}', expected laplace or gaussian")

    def noises(factor: float) -> dict[str, QueryNoise]:
        return {name: QueryNoise("laplace", 1.0 / (factor * s * epsilon)) for name, s in shares.items()}

    def spent(factor: float) -> float:
        return compose_epsilon([n.event for n in noises(factor).values()], delta, accountant)

    lo, hi = 0.25, 1.0
    while spent(hi) < epsilon and hi < 1e3:  # RDP may allow more than simple addition: widen the bracket
        lo, hi = hi, hi * 2
    while spent(lo) > epsilon:
        lo /= 2
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if spent(mid) <= epsilon else (lo, mid)
    return noises(lo)

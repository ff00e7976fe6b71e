"""The noise plan of one baskets job: two Gaussian releases per partner, calibrated to the job's epsilon.

Round 1 (``items``) is OpenDP's Gaussian *threshold* release of the customers per item (each customer towards at
most ``max_items`` items: L2 sqrt(L)); round 2 (``pairs``) is one Gaussian release of the vector (customers,
customers per candidate item, customers per candidate pair), L2 sqrt(1 + L + L(L-1)/2) per customer. Both are
Gaussian, so their cost adds in zCDP: the plan splits the job's rho by the public :data:`SELECTION_SHARE` and
finds the largest rho whose two events compose (RDP, the accountant of every ledger) to the job's epsilon at its
delta. The thresholding's own delta (the chance an item of a handful of customers shows in round 1) is priced
separately, like insights' key discovery: :data:`SELECTION_DELTA_SHARE` of the job's delta, added to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.ledger import THRESHOLD_DELTA_SHARE, ThresholdDeltaEvent, compose_epsilon

SELECTION_SHARE = 0.3
"""Share of the job's rho spent on choosing the candidate items (round 1). The counts that make the support,
confidence and lift come from round 2, so it gets the larger share; round 1 only needs to rank items."""
SELECTION_DELTA_SHARE = THRESHOLD_DELTA_SHARE
"""The thresholding's delta, as a share of the job's delta (it is added to the delta the job is stated at)."""


def pair_count(items: int) -> int:
    """Pairs among ``items`` items (the length of round 2's pair vector)."""
    return items * (items - 1) // 2


def release_bound(max_items: int) -> float:
    """L2 bound of one customer's round-2 vector: 1 (customers) + L item counts + L(L-1)/2 pair counts, each +1."""
    return math.sqrt(1 + max_items + pair_count(max_items))


@dataclass(frozen=True)
class NoisePlan:
    """Noise multipliers (sigma = multiplier x the release's L2 bound) of the two releases."""

    selection: float
    counts: float
    rho: float

    def events(self) -> list[dp_event.DpEvent]:
        """The two Gaussian releases (what the job's epsilon at its delta is calibrated on)."""
        return [dp_event.GaussianDpEvent(self.selection), dp_event.GaussianDpEvent(self.counts)]

    def charged_events(self, selection_delta: float) -> list[dp_event.DpEvent]:
        """What the two rounds cost every ledger: round 1 with its thresholding delta (each ledger takes it from
        its budget's delta), round 2 as it is."""
        selection, counts = self.events()
        return [dp_event.ComposedDpEvent([selection, ThresholdDeltaEvent(selection_delta)]), counts]


def _plan_for_rho(rho: float) -> NoisePlan:
    return NoisePlan(1.0 / math.sqrt(2.0 * SELECTION_SHARE * rho),
                     1.0 / math.sqrt(2.0 * (1.0 - SELECTION_SHARE) * rho), rho)


@lru_cache(maxsize=64)
def noise_plan(epsilon: float, delta: float) -> NoisePlan:
    """The largest-rho plan whose two releases compose to at most ``epsilon`` at ``delta`` (bisection on rho)."""
    if not (epsilon > 0 and math.isfinite(epsilon) and 0 < delta < 1):
        raise ConfigError(f"baskets needs epsilon > 0 and 0 < delta < 1 (got {epsilon}, {delta})")
    lo, hi = 1e-9, 1.0
    while compose_epsilon(_plan_for_rho(hi).events(), delta) < epsilon:
        lo, hi = hi, hi * 2.0
        if hi > 1e9:
            raise ConfigError(f"epsilon {epsilon} is too large to calibrate")
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if compose_epsilon(_plan_for_rho(mid).events(), delta) <= epsilon else (lo, mid)
    return _plan_for_rho(lo)

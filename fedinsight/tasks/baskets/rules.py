"""Support, confidence and lift from the summed noisy counts, with 95 % intervals and suppression.

Everything here is post-processing of round 2's noisy sums: ``N`` (customers with a purchase), ``n_a`` (customers
with item a in their cut basket) and ``n_ab`` (with both), each the sum of K partners' releases, every coordinate
with its own independent Gaussian noise of the public sd ``s`` (the partners' sigma x sqrt(K)).

- support(a, b) = n_ab / N: the share of customers who bought both;
- confidence(a -> b) = n_ab / n_a: of those who bought a, the share who also bought b;
- lift(a, b) = n_ab N / (n_a n_b): how many times more often a and b go together than if they were unrelated
  (1 = unrelated, 2 = twice as often).

Intervals (delta method, the noise being the only randomness, like every interval in fedinsight: they cover the
exact value on the federation's cut baskets): var(support) ~ s^2 (1 + p^2) / N^2, var(confidence) ~
s^2 (1 + c^2) / n_a^2, and lift on the log scale, var(log lift) ~ s^2 (1/n_ab^2 + 1/n_a^2 + 1/n_b^2 + 1/N^2)
(a ratio's interval is asymmetric and never below 0).

Suppression (decided on noisy counts only, :mod:`fedinsight.privacy.suppression`): an item or a pair whose noisy
customer count is under the minimum group size is not reported, and no rate is reported whose numerator or
denominator is suppressed.

Which pairs are rules. With hundreds of pairs compared, unrelated pairs whose count drew a large positive noise
would top a list ranked by lift (2.5 % of 1,770 unrelated pairs beat a plain 95 % bound by chance). And the delta
method, evaluated at a noisy count, is far too narrow when the count is mostly noise (10 true customers drawn as
190). So the ranking uses a conservative bound that holds for all compared pairs at once: every count is moved
against the pair by ``z`` noise sds, with ``z`` the Bonferroni quantile for 2.5 % over the pairs (4.2 for 1,770
pairs): ``(n_ab - z s)^+ (N - z s) / ((n_a + z s)(n_b + z s))``. A pair is a *rule* only if that bound is above 1 (a
link, not luck), and rules are ranked by it. The intervals shown stay the 95 % delta-method ones, accurate when a
pair's count is well above its noise (the 95 % coverage test uses counts over 4 sds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from fedinsight.privacy.intervals import Z95
from fedinsight.privacy.suppression import suppressed
from fedinsight.tasks.baskets.basket import pair_index


def _ci(value: float, sd: float, lo: float = 0.0, hi: float = 1.0) -> list[float]:
    return [max(lo, value - Z95 * sd), min(hi, value + Z95 * sd)]


def lift_log_sd(n_ab: float, n_a: float, n_b: float, total: float, sd: float) -> float:
    """The sd of log(lift) due to the noise (delta method)."""
    return sd * math.sqrt(1 / n_ab**2 + 1 / n_a**2 + 1 / n_b**2 + 1 / total**2)


def lift_interval(n_ab: float, n_a: float, n_b: float, total: float, sd: float) -> tuple[float, list[float]]:
    """Lift and its 95 % interval (delta method on the log scale)."""
    lift = n_ab * total / (n_a * n_b)
    log_sd = lift_log_sd(n_ab, n_a, n_b, total, sd)
    return lift, [lift * math.exp(-Z95 * log_sd), lift * math.exp(Z95 * log_sd)]


def rank_bound(n_ab: float, n_a: float, n_b: float, total: float, sd: float, z: float) -> float:
    """A lower bound of the lift with every count moved ``z`` sds against the pair (0 if the pair count may be 0)."""
    return max(0.0, n_ab - z * sd) * max(0.0, total - z * sd) / ((n_a + z * sd) * (n_b + z * sd))


def simultaneous_z(compared: int) -> float:
    """One-sided z whose bound holds for all ``compared`` pairs at once with 97.5 % confidence (Bonferroni)."""
    return NormalDist().inv_cdf(1 - 0.025 / max(1, compared))


def estimate(candidates: Sequence[str], customers: float, items: np.ndarray, pairs: np.ndarray, sd: float,
             min_group_size: int, top: int) -> dict[str, Any]:
    """The task's released figures: items, pairs (support, confidence both ways, lift) and the top rules."""
    m, slots = len(candidates), len(items)
    total_hidden = bool(suppressed(np.array([customers]), min_group_size)[0])
    item_hidden = suppressed(np.asarray(items[:m]), min_group_size) | total_hidden
    out_items = []
    for a, name in enumerate(candidates):
        if item_hidden[a]:
            out_items.append({"item": name, "suppressed": True})
            continue
        n_a = float(items[a])
        share = n_a / customers
        out_items.append({"item": name, "customers": round(n_a, 1), "customers_ci95": _ci(n_a, sd, 0.0, math.inf),
                          "share": share, "share_ci95": _ci(share, sd * math.sqrt(1 + share**2) / customers),
                          "suppressed": False})
    out_pairs, hidden_pairs = [], 0
    z_rank = simultaneous_z(m * (m - 1) // 2)
    for a in range(m):
        for b in range(a + 1, m):
            n_ab = float(pairs[pair_index(np.array([a]), np.array([b]), slots)[0]])
            if item_hidden[a] or item_hidden[b] or n_ab < min_group_size:
                hidden_pairs += 1
                continue
            n_a, n_b = float(items[a]), float(items[b])
            support, conf_ab, conf_ba = n_ab / customers, n_ab / n_a, n_ab / n_b
            lift, lift_ci = lift_interval(n_ab, n_a, n_b, customers, sd)
            out_pairs.append({
                "items": [candidates[a], candidates[b]], "customers": round(n_ab, 1),
                "support": support, "support_ci95": _ci(support, sd * math.sqrt(1 + support**2) / customers),
                "confidence": conf_ab, "confidence_ci95": _ci(conf_ab, sd * math.sqrt(1 + conf_ab**2) / n_a),
                "confidence_reverse": conf_ba,
                "confidence_reverse_ci95": _ci(conf_ba, sd * math.sqrt(1 + conf_ba**2) / n_b),
                "lift": lift, "lift_ci95": lift_ci,
                "lift_rank_bound": rank_bound(n_ab, n_a, n_b, customers, sd, z_rank),
            })
    out_pairs.sort(key=lambda p: (-p["lift_rank_bound"], p["items"]))
    return {
        "customers": None if total_hidden else round(customers, 1),
        "customers_ci95": None if total_hidden else _ci(customers, sd, 0.0, math.inf),
        "items": out_items, "pairs": out_pairs, "rules": [p for p in out_pairs if p["lift_rank_bound"] > 1.0][:top],
        "suppressed_items": int(item_hidden.sum()), "suppressed_pairs": hidden_pairs, "count_noise_sd": sd,
    }

"""Campaign economics per offer: incremental conversions and revenue, CPA/CAC and ROI, with 95 % intervals.

From one Gaussian release per partner (:func:`arm_totals`): for every arm of the campaign, over the partner's whole
audience, the customers exposed, the customers who converted, and their usual order values (each capped at the
job's public ``order-value-cap`` and divided by it, so one customer moves the vector by at most L2 sqrt(3)). The
coordinator sums the partners' noisy vectors and computes, per offer against the control arm:

- incremental conversions = (conversion rate of the offer - of the control) x customers sent the offer;
- incremental revenue = incremental conversions x the offer's converters' mean usual order (the events carry no
  order amount: the customer's usual order before the campaign stands for it);
- cost = declared cost per customer x customers sent; CPA = CAC = cost / incremental conversions (one conversion
  per customer: each is one customer acquired for the campaign); ROI = (incremental revenue - cost) / cost.

Intervals: a parametric bootstrap on the released numbers (post-processing, public seed): each draw adds the
release's Gaussian noise (known sd) and the binomial sampling variation of the conversion counts, and the 2.5 and
97.5 percentiles of the recomputed figures are reported. The spread of order values within an arm is not in it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedinsight.privacy.suppression import MIN_GROUP_FLOOR, suppressed
from fedinsight.tasks.uplift.features import Audience

DRAWS = 4_000
SEED = 0
SENSITIVITY = math.sqrt(3.0)


def arm_totals(who: Audience, arms: int, cap: float) -> np.ndarray:
    """Per arm (customers, converters, sum of converters' usual order / cap), flattened arm-major."""
    out = np.zeros((arms, 3))
    value = np.minimum(who.order_value, cap) / cap * who.converted
    for a in range(arms):
        mask = who.arm == a
        out[a] = (mask.sum(), who.converted[mask].sum(), value[mask].sum())
    return out.ravel()


def _figures(n: np.ndarray, y: np.ndarray, v: np.ndarray, cost: float) -> dict[str, np.ndarray]:
    """Figures of one offer (index 1) against the control (index 0); arrays over bootstrap draws."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_t, rate_c = y[1] / n[1], y[0] / n[0]
        incremental = (rate_t - rate_c) * n[1]
        revenue = incremental * v[1] / y[1]
        spend = cost * n[1]
        return {"conversion_rate_offer": rate_t, "conversion_rate_control": rate_c,
                "incremental_conversions": incremental, "incremental_revenue": revenue, "cost": spend,
                "cpa": np.where(incremental > 0, spend / incremental, np.nan),
                "roi": (revenue - spend) / spend if cost > 0 else np.full_like(revenue, np.nan)}


def summary(totals: np.ndarray, offers: tuple[str, ...], costs: dict[str, float], cap: float, noise_sd: float,
            min_group_size: int = MIN_GROUP_FLOOR) -> dict[str, Any]:
    """Per offer: each figure with its 95 % interval (None where undefined, e.g. CPA without extra conversions).

    An offer whose arm, or the control arm, has a noisy customer count under ``min_group_size`` is reported as
    suppressed, with no figure (decided on the noisy counts: post-processing), as the policy's small cells are."""
    t = np.asarray(totals, dtype=float).reshape(len(offers) + 1, 3)
    hidden = suppressed(t[:, 0], min_group_size)
    n, y, v = np.maximum(t[:, 0], 1.0), np.clip(t[:, 1], 0.0, None), np.clip(t[:, 2], 0.0, None) * cap
    y = np.minimum(y, n)
    rng = np.random.default_rng(SEED)
    out: dict[str, Any] = {}
    for o, name in enumerate(offers):
        idx = [0, o + 1]
        if hidden[0] or hidden[o + 1]:
            out[name] = {"suppressed": True, "cost_per_customer": costs[name]}
            continue
        point = _figures(n[idx], y[idx], v[idx], costs[name])
        p = y[idx] / n[idx]
        draw_n = n[idx][:, None] + rng.normal(0.0, noise_sd, (2, DRAWS))
        sampling = np.sqrt(np.maximum(n[idx] * p * (1 - p), 0.0))[:, None]
        draw_y = y[idx][:, None] + rng.normal(0.0, 1.0, (2, DRAWS)) * np.sqrt(sampling**2 + noise_sd**2)
        draw_v = v[idx][:, None] + rng.normal(0.0, noise_sd * cap, (2, DRAWS))
        draws = _figures(np.maximum(draw_n, 1.0), np.clip(draw_y, 0.0, None), np.clip(draw_v, 0.0, None),
                         costs[name])
        out[name] = {}
        for key, value in point.items():
            finite = draws[key][np.isfinite(draws[key])]
            ok = math.isfinite(float(value)) and finite.size >= DRAWS * 0.9
            out[name][key] = {"value": float(value) if math.isfinite(float(value)) else None,
                              "ci95": [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]
                              if ok else None}
        out[name]["suppressed"] = False
        out[name]["customers_sent"] = float(n[o + 1])
        out[name]["cost_per_customer"] = costs[name]
    return out

"""Turning partners' noisy aggregates into released insights: sum, error bars, suppression, derived numbers.

What the coordinator does with the replies of one query:

1. **combine** -- check every partner answered with the same layout and exactly the noise that was
   priced, then add the noisy vectors. The noise variance of each combined cell is the sum of the
   partners' noise variances (each partner noised its own figure; nobody's exact figure exists here).
2. **post-process** -- per query kind: counts, rates, means, shares, lifts. Suppression is decided on
   noisy customer counts; no released number depends on a suppressed one (see
   :mod:`fedinsight.privacy.suppression`). Every number carries ``noise_sd`` and a 95 % interval
   (exact quantile of the summed noise for direct counts and sums, delta method for ratios; A/B
   differences add the binomial sampling variance).

Nothing here keeps or returns any partner's own vector; the output holds combined figures only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedinsight.core.errors import PartnerReplyError
from fedinsight.privacy.allocation import QueryNoise
from fedinsight.privacy.intervals import Z95, estimate, noise_z95, ratio, ratio_variance
from fedinsight.privacy.suppression import suppressed
from fedinsight.tasks.insights.catalogue import FeatureRulesSpec, GroupBy, _Query

SUPPRESSED: dict[str, Any] = {"suppressed": True}
INTERVALS = ("95 % intervals of the noise around the exact aggregate of the contribution-bounded data: exact "
             "quantile of the summed partner noise for counts and sums, delta method for rates, means and shares")


@dataclass(frozen=True)
class Combined:
    """One measure summed over partners, with the noise variance of each cell (raw units)."""

    dims: tuple[tuple[str, tuple[str, ...]], ...]
    values: np.ndarray
    variance: np.ndarray


@dataclass(frozen=True)
class CombinedQuery:
    measures: dict[str, Combined]
    mechanism: str
    partners: int

    @property
    def z(self) -> float:
        """95 % factor for a direct (summed) number."""
        return noise_z95(self.mechanism, self.partners)


def combine(name: str, replies: Sequence[dict[str, Any]], expected: QueryNoise) -> CombinedQuery:
    """Sum the partners' noisy vectors of query ``name``; refuse anything but the priced noise."""
    if not replies:
        raise PartnerReplyError(f"no partner answered query '{name}'")
    layout = replies[0]["layout"]
    total: np.ndarray | None = None
    variance: np.ndarray | None = None
    for reply in replies:
        if reply["layout"] != layout:
            raise PartnerReplyError(f"partners answered query '{name}' with different layouts")
        if reply["mechanism"] != expected.mechanism or not math.isclose(
                float(reply["multiplier"]), expected.multiplier, rel_tol=1e-9):
            raise PartnerReplyError(f"a partner answered query '{name}' with other noise than was priced")
        values = np.asarray(reply["values"], dtype=float)
        var = np.full(values.shape, float(reply["noise_variance"]))
        total = values if total is None else total + values
        variance = var if variance is None else variance + var
    assert total is not None and variance is not None
    measures: dict[str, Combined] = {}
    offset = 0
    for m in layout:
        dims = tuple((d, tuple(keys)) for d, keys in m["dims"])
        shape = tuple(len(k) for _, k in dims)
        size = int(np.prod(shape))
        if offset + size > total.size:
            raise PartnerReplyError(f"query '{name}': reply shorter than its layout")
        scale = np.asarray(m["scale"], dtype=float)  # one unit, or one per key of the last dim
        measures[m["name"]] = Combined(dims, total[offset:offset + size].reshape(shape) * scale,
                                       variance[offset:offset + size].reshape(shape) * scale**2)
        offset += size
    if offset != total.size:
        raise PartnerReplyError(f"query '{name}': reply longer than its layout")
    return CombinedQuery(measures, expected.mechanism, len(replies))


# --- post-processing -----------------------------------------------------------------------------

class _Release:
    """Helpers that build estimates and count suppressions for one insight."""

    def __init__(self, cq: CombinedQuery, min_group_size: int, margin_sd: float = 0.0) -> None:
        self.cq, self.min, self.margin = cq, min_group_size, margin_sd
        self.cells = 0
        self.suppressed = 0

    def mask(self, counts: Combined) -> np.ndarray:
        """Suppression of customer-count cells (decided on the noisy counts, counted once)."""
        mask = suppressed(counts.values, self.min, np.sqrt(counts.variance), self.margin)
        self.cells += mask.size
        self.suppressed += int(mask.sum())
        return mask

    def direct(self, c: Combined, idx: Any, *, lower: float | None = 0.0, upper: float | None = None) -> dict:
        return estimate(float(c.values[idx]), float(c.variance[idx]), self.cq.z, lower=lower,
                        upper=upper).to_dict()

    def rate(self, num: Combined, den: Combined, idx: Any, *, lower: float | None = 0.0,
             upper: float | None = 1.0) -> dict:
        """num/den; withheld when the denominator would be suppressed as a group (or is not positive)."""
        if suppressed(np.array([den.values[idx]]), self.min, math.sqrt(float(den.variance[idx])), self.margin)[0] \
                or not float(den.values[idx]) > 0:
            return SUPPRESSED
        return ratio(float(num.values[idx]), float(num.variance[idx]), float(den.values[idx]),
                     float(den.variance[idx]), lower=lower, upper=upper).to_dict()

    @staticmethod
    def share(c: Combined, idx: Any, kept: np.ndarray) -> dict:
        """c[idx] / (sum of c over kept cells), delta method; kept cells only, so nothing suppressed leaks."""
        if int(np.count_nonzero(kept)) < 2:  # a share among one released cell is 1 by construction: withhold
            return SUPPRESSED
        total = float(c.values[kept].sum())
        rest_var = float(c.variance[kept].sum()) - float(c.variance[idx])
        v, var = float(c.values[idx]), float(c.variance[idx])
        if total <= 0:
            return SUPPRESSED
        variance = ((total - v) ** 2 * var + v**2 * rest_var) / total**4
        return estimate(v / total, variance, Z95, lower=0.0, upper=1.0).to_dict()


def _segment_profile(spec: _Query, cq: CombinedQuery, rel: _Release, rules: FeatureRulesSpec) -> dict:
    n, spend, rep = cq.measures["customers"], cq.measures["spend"], cq.measures["repurchasers"]
    (by, keys), = n.dims
    mask = rel.mask(n)
    groups = []
    for i, key in enumerate(keys):
        if mask[i]:
            groups.append({by: key, **SUPPRESSED})
            continue
        groups.append({
            by: key, "suppressed": False,
            "customers": rel.direct(n, i),
            "share": rel.share(n, i, ~mask),
            "mean_spend": rel.rate(spend, n, i, upper=rules.spend_cap),
            "repurchase_rate": rel.rate(rep, n, i),
        })
    return {"groups": groups}


def _ltv_tiers(spec: _Query, cq: CombinedQuery, rel: _Release, rules: FeatureRulesSpec) -> dict:
    n, value = cq.measures["customers"], cq.measures["value"]
    n_prev, value_prev = cq.measures["customers_prev"], cq.measures["value_prev"]
    (by, keys), = n.dims
    mask, mask_prev = rel.mask(n), rel.mask(n_prev)
    tiers, growth = [], {}
    for i, key in enumerate(keys):
        if mask[i]:
            tiers.append({by: key, **SUPPRESSED})
            continue
        row: dict[str, Any] = {
            by: key, "suppressed": False,
            "customers": rel.direct(n, i), "customer_share": rel.share(n, i, ~mask),
            "value": rel.direct(value, i), "value_share": rel.share(value, i, ~mask),
            "mean_value": rel.rate(value, n, i, upper=rules.value_cap),
        }
        if not mask_prev[i]:
            row["customers_prev"] = rel.direct(n_prev, i)
            row["value_prev"] = rel.direct(value_prev, i)
            g = ratio(float(n.values[i]), float(n.variance[i]), float(n_prev.values[i]), float(n_prev.variance[i]),
                      lower=0.0)  # both counts are released (>= the minimum group size), so n_prev > 0
            row["growth"] = estimate(g.value - 1.0, g.noise_sd**2, lower=-1.0).to_dict()
            growth[key] = row["growth"]
        else:
            row["customers_prev"] = SUPPRESSED
        tiers.append(row)
    growing = sorted((k for k, g in growth.items() if g["ci95"][0] > 0), key=lambda k: -growth[k]["value"])
    fastest = max(growth, key=lambda k: growth[k]["value"]) if growth else None
    return {"tiers": tiers, "growing_tiers": growing, "fastest_growing_tier": fastest}


RATE_STEPS = (("click_rate", "click", "exposure"), ("participate_rate", "participate", "click"),
              ("convert_rate", "convert", "participate"), ("conversion", "convert", "exposure"))


def _funnel(spec: _Query, cq: CombinedQuery, rel: _Release, rules: FeatureRulesSpec) -> dict:
    c = cq.measures["customers"]
    (by, keys), (_, stages) = c.dims
    mask = rel.mask(c)
    col = {s: j for j, s in enumerate(stages)}
    groups = []
    for i, key in enumerate(keys):
        counts = {s: SUPPRESSED if mask[i, j] else rel.direct(c, (i, j)) for s, j in col.items()}
        rates = {}
        for rate_name, num, den in RATE_STEPS:
            if mask[i, col[num]] or mask[i, col[den]]:
                rates[rate_name] = SUPPRESSED
            else:
                rates[rate_name] = ratio(float(c.values[i, col[num]]), float(c.variance[i, col[num]]),
                                         float(c.values[i, col[den]]), float(c.variance[i, col[den]]),
                                         lower=0.0, upper=1.0).to_dict()
        groups.append({by: key, "suppressed": bool(mask[i].all()), "customers": counts, "rates": rates})
    return {"groups": groups}


def _ab_test(spec: _Query, cq: CombinedQuery, rel: _Release, rules: FeatureRulesSpec) -> dict:
    exposed, converted = cq.measures["exposed"], cq.measures["converted"]
    (_, campaigns), (_, arms) = exposed.dims
    mask_e, mask_c = rel.mask(exposed), rel.mask(converted)
    out = []
    for i, camp in enumerate(campaigns):
        arm_rows: dict[str, Any] = {}
        for j, arm in enumerate(arms):
            arm_rows[arm] = {
                "exposed": SUPPRESSED if mask_e[i, j] else rel.direct(exposed, (i, j)),
                "converted": SUPPRESSED if mask_c[i, j] else rel.direct(converted, (i, j)),
                "conversion_rate": SUPPRESSED if mask_e[i, j] or mask_c[i, j] else rel.rate(converted, exposed, (i, j)),
            }
        row: dict[str, Any] = {"campaign": camp, "control": arms[0], "treatment": arms[1], "arms": arm_rows}
        if mask_e[i].any() or mask_c[i].any():
            row.update(difference=SUPPRESSED, relative_lift=SUPPRESSED, decision="suppressed (groups too small)")
        else:
            row.update(_lift(exposed, converted, i))
        out.append(row)
    return {"campaigns": out}


def _lift(exposed: Combined, converted: Combined, i: int) -> dict[str, Any]:
    """Difference and relative lift of arm 1 over arm 0, with sampling + DP noise variance."""
    rates, noise_var, samp_var = [], [], []
    for j in (0, 1):
        n, c = float(exposed.values[i, j]), float(converted.values[i, j])
        r = min(1.0, max(0.0, c / n))
        rates.append(r)
        noise_var.append(ratio_variance(c, float(converted.variance[i, j]), n, float(exposed.variance[i, j])))
        samp_var.append(r * (1 - r) / n)
    r0, r1 = rates
    diff = estimate(r1 - r0, noise_var[0] + noise_var[1], lower=-1.0, upper=1.0,
                    sampling_variance=samp_var[0] + samp_var[1])
    if r0 > 0:
        d0, d1 = r1 / r0**2, 1.0 / r0  # gradient of r1/r0 in (r0, r1)
        lift = estimate(r1 / r0 - 1.0, d0**2 * noise_var[0] + d1**2 * noise_var[1], lower=-1.0,
                        sampling_variance=d0**2 * samp_var[0] + d1**2 * samp_var[1]).to_dict()
    else:
        lift = SUPPRESSED
    lo, hi = diff.ci95
    decision = ("treatment better (significant at 5 %)" if lo > 0 else
                "control better (significant at 5 %)" if hi < 0 else "no significant difference")
    return {"difference": diff.to_dict(), "relative_lift": lift, "decision": decision, "significant": lo > 0 or hi < 0}


def _distribution(c: Combined, i: int, rel: _Release, mask: np.ndarray) -> tuple[dict[str, Any], str | None]:
    """Counts and within-group shares over the second dimension of ``c`` for group ``i``; the peak key."""
    (_, keys) = c.dims[1]
    kept = ~mask[i]
    out: dict[str, Any] = {}
    for j, key in enumerate(keys):
        if mask[i, j]:
            out[key] = SUPPRESSED
        else:
            row_c = Combined(c.dims[1:], c.values[i], c.variance[i])
            out[key] = {"customers": rel.direct(c, (i, j)), "share": rel.share(row_c, j, kept)}
    peak = None if not kept.any() else keys[int(np.argmax(np.where(kept, c.values[i], -np.inf)))]
    return out, peak


def _heatmap(cells: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"mon-09": cell}`` (168 slots) nested as ``{"mon": {"09": cell}}``, weekdays and hours in order."""
    nested: dict[str, dict[str, Any]] = {}
    for slot, cell in cells.items():
        day, hour = slot.split("-", 1)
        nested.setdefault(day, {})[hour] = cell
    return nested


def _golden_hours(spec: _Query, cq: CombinedQuery, rel: _Release, rules: FeatureRulesSpec) -> dict:
    """Per group: the hour and weekday marginals and, with the heatmap, the weekday x hour joint counts.

    Every slot cell is suppressed on its own noisy count (the same rule as the marginals), and its
    share is over the group's *released* slots only, so a hidden slot cannot be recovered from the
    shares; ``peak_slot`` is the released slot with the largest noisy count.
    """
    hours, days = cq.measures["customers_by_hour"], cq.measures["customers_by_weekday"]
    slots = cq.measures.get("customers_by_slot")
    if getattr(spec, "heatmap", False) and slots is None:
        raise PartnerReplyError(f"query '{spec.name}': partners sent no weekday x hour heatmap although it was asked "
                                "for (update the partners' fedinsight)")
    (by, keys), _ = hours.dims
    mask_h, mask_d = rel.mask(hours), rel.mask(days)
    mask_s = rel.mask(slots) if slots is not None else None
    groups = []
    for i, key in enumerate(keys):
        by_hour, golden = _distribution(hours, i, rel, mask_h)
        by_day, best_day = _distribution(days, i, rel, mask_d)
        group: dict[str, Any] = {by: key, "golden_hour": golden, "best_weekday": best_day}
        if slots is not None and mask_s is not None:
            by_slot, peak = _distribution(slots, i, rel, mask_s)
            group.update(peak_slot=peak, by_hour=by_hour, by_weekday=by_day, by_slot=_heatmap(by_slot))
        else:
            group.update(by_hour=by_hour, by_weekday=by_day)
        groups.append(group)
    return {"groups": groups, "timezone": getattr(spec, "timezone", "UTC")}


def _channel_response(spec: _Query, cq: CombinedQuery, rel: _Release, rules: FeatureRulesSpec) -> dict:
    exposed, responded = cq.measures["exposed"], cq.measures["responded"]
    (by, keys), (_, channels) = exposed.dims
    mask_e, mask_r = rel.mask(exposed), rel.mask(responded)
    groups = []
    for i, key in enumerate(keys):
        per_channel, best, best_rate = {}, None, -1.0
        for j, ch in enumerate(channels):
            if mask_e[i, j]:
                per_channel[ch] = SUPPRESSED
                continue
            row = {"exposed": rel.direct(exposed, (i, j))}
            if mask_r[i, j]:
                row.update(responded=SUPPRESSED, response_rate=SUPPRESSED)
            else:
                row.update(responded=rel.direct(responded, (i, j)), response_rate=rel.rate(responded, exposed, (i, j)))
                if row["response_rate"]["value"] > best_rate:
                    best, best_rate = ch, row["response_rate"]["value"]
            per_channel[ch] = row
        groups.append({by: key, "best_channel": best, "channels": per_channel})
    return {"groups": groups}


def _channel_creative(spec: _Query, cq: CombinedQuery, rel: _Release, rules: FeatureRulesSpec) -> dict:
    """The three-way table (group x channel x creative) and, per group, the best released channel-creative pair.

    A cell is released only when its exposed and responded counts both clear the suppression rule; the best pair
    is the released cell with the highest noisy response rate, with its 95 % interval, and ``clear_winner`` says
    whether that interval lies above the runner-up's (otherwise the top pairs are indistinguishable)."""
    exposed, responded = cq.measures["exposed"], cq.measures["responded"]
    (by, keys), (_, channels), (_, creatives) = exposed.dims
    mask_e, mask_r = rel.mask(exposed), rel.mask(responded)
    groups = []
    for i, key in enumerate(keys):
        table: dict[str, dict[str, Any]] = {}
        ranked: list[tuple[float, str, str, dict]] = []
        for j, ch in enumerate(channels):
            row: dict[str, Any] = {}
            for k, cr in enumerate(creatives):
                idx = (i, j, k)
                if mask_e[idx]:
                    row[cr] = SUPPRESSED
                    continue
                cell: dict[str, Any] = {"exposed": rel.direct(exposed, idx)}
                if mask_r[idx]:
                    cell.update(responded=SUPPRESSED, response_rate=SUPPRESSED)
                else:
                    rate = rel.rate(responded, exposed, idx)
                    cell.update(responded=rel.direct(responded, idx), response_rate=rate)
                    if "value" in rate:
                        ranked.append((float(rate["value"]), ch, cr, rate))
                row[cr] = cell
            table[ch] = row
        ranked.sort(key=lambda t: -t[0])
        best = None
        if ranked:
            _, ch, cr, rate = ranked[0]
            clear = len(ranked) > 1 and rate["ci95"][0] > ranked[1][3]["ci95"][1]
            best = {"channel": ch, "creative": cr, "response_rate": rate, "clear_winner": bool(clear),
                    "runner_up": None if len(ranked) < 2 else {"channel": ranked[1][1], "creative": ranked[1][2],
                                                                 "response_rate": ranked[1][3]}}
        groups.append({by: key, "best_pair": best, "cells": table})
    return {"groups": groups}


def _group_by(spec: _Query, cq: CombinedQuery, rel: _Release, rules: FeatureRulesSpec) -> dict:
    assert isinstance(spec, GroupBy)
    cust = cq.measures["customers"]
    mask = rel.mask(cust)
    count, total = cq.measures.get("count"), cq.measures.get("sum")
    lo, hi = spec.bounds if spec.bounds is not None else (None, None)
    rows = []
    for idx in np.ndindex(*cust.values.shape):
        keys = {d: k[i] for (d, k), i in zip(cust.dims, idx, strict=True)}
        if mask[idx]:
            rows.append({"keys": keys, **SUPPRESSED})
            continue
        row: dict[str, Any] = {"keys": keys, "suppressed": False, "customers": rel.direct(cust, idx)}
        if "count" in spec.aggregates and count is not None:
            row["count"] = rel.direct(count, idx)
        if "sum" in spec.aggregates and total is not None:
            row["sum"] = rel.direct(total, idx, lower=None)
        if "mean" in spec.aggregates and total is not None and count is not None:
            row["mean"] = rel.rate(total, count, idx, lower=lo, upper=hi)  # type: ignore[arg-type]
        rows.append(row)
    return {"groups": rows}


BUILDERS: dict[str, Callable[[_Query, CombinedQuery, _Release, FeatureRulesSpec], dict]] = {
    "segment_profile": _segment_profile,
    "ltv_tiers": _ltv_tiers,
    "funnel": _funnel,
    "ab_test": _ab_test,
    "golden_hours": _golden_hours,
    "channel_response": _channel_response,
    "channel_creative": _channel_creative,
    "group_by": _group_by,
}


def build_insight(spec: _Query, cq: CombinedQuery, *, rules: FeatureRulesSpec, min_group_size: int,
                  noise: QueryNoise, epsilon: float, delta: float, margin_sd: float = 0.0) -> dict[str, Any]:
    """The released insight of one query: its result, error bars, suppression count and price."""
    rel = _Release(cq, min_group_size, margin_sd)
    result = BUILDERS[spec.kind](spec, cq, rel, rules)  # type: ignore[attr-defined]
    return {
        "name": spec.name,
        "kind": spec.kind,  # type: ignore[attr-defined]
        "title": spec.title,
        "query": spec.model_dump(mode="json"),
        "epsilon": epsilon,
        "delta": delta,
        "mechanism": noise.mechanism,
        "noise_multiplier": noise.multiplier,
        "partners": cq.partners,
        "min_group_size": min_group_size,
        "suppression_margin_sd": margin_sd,
        "groups": rel.cells,
        "suppressed_groups": rel.suppressed,
        "intervals": INTERVALS,
        "result": result,
    }


def paired_estimates(released: Any, reference: Any, path: str = "") -> list[tuple[str, dict, dict]]:
    """Estimates found at the same place in two insight documents (released vs. noise-free reference).

    Used to check interval coverage: both documents come from the same batch, so groups line up.
    Suppressed numbers (in either) are skipped.
    """
    out: list[tuple[str, dict, dict]] = []
    if isinstance(released, dict) and isinstance(reference, dict):
        if "value" in released and "ci95" in released:
            if "value" in reference:
                out.append((path, released, reference))
            return out
        for key, value in released.items():
            if key in reference:
                out += paired_estimates(value, reference[key], f"{path}.{key}" if path else str(key))
    elif isinstance(released, list) and isinstance(reference, list) and len(released) == len(reference):
        for i, (a, b) in enumerate(zip(released, reference, strict=True)):
            out += paired_estimates(a, b, f"{path}[{i}]")
    return out

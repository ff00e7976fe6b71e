"""The baskets plan in words, shown by ``fedinsight simulate baskets`` before it runs (public options only).

What a marketer needs to judge before spending: how many customers an item needs at one partner to be considered
at all, how noisy every count will be once summed over the partners, and so roughly how many customers a pair
needs to become a rule.
"""

from __future__ import annotations

import math

from fedinsight.federation.delta import provisional
from fedinsight.federation.task import Preview
from fedinsight.tasks.baskets.client import selection_threshold
from fedinsight.tasks.baskets.noise import release_bound
from fedinsight.tasks.baskets.options import BasketsOptions
from fedinsight.tasks.baskets.rules import simultaneous_z


def preview_of(options: BasketsOptions, partners: int) -> Preview:
    plan = options.noise()
    threshold = selection_threshold(options)
    sd_one = plan.counts * release_bound(options.max_items)
    sd_sum = sd_one * math.sqrt(max(1, partners))
    z = simultaneous_z(options.pairs)
    rows = [
        ["1 items", f"items whose noisy customer count reaches {threshold:,.0f} at a partner",
         f"{plan.selection * math.sqrt(options.max_items):,.1f} per partner"],
        ["2 pairs", f"customers, {options.candidates} candidate items, {options.pairs:,} pairs",
         f"{sd_one:,.1f} per partner, {sd_sum:,.1f} summed over {partners}"],
    ]
    notes = [
        f"epsilon {options.epsilon:g} per partner at delta {provisional(options.delta):g}"
        + (" or less (the largest every partner accepts)" if options.delta is None else "")
        + f" (+ a thousandth of it, {options.selection_delta:.2g}, for item selection), charged on every ledger "
        "before anyone computes",
        f"each customer counts for their {options.max_items} most bought items",
        f"with all {options.candidates} candidates kept, a pair becomes a rule only with roughly {z * sd_sum:,.0f}+ "
        f"customers (summed over partners) and a clear lift: every count is moved {z:.1f} noise sds against it "
        "(fewer candidates: a little less)",
    ]
    data = {"threshold": threshold, "count_noise_sd_partner": sd_one, "count_noise_sd_summed": sd_sum,
            "rule_z": z, "noise": {"selection": plan.selection, "counts": plan.counts, "rho": plan.rho}}
    return Preview("Bought together: the plan", ["round", "each partner sends", "noise sd (customers)"], rows,
                   notes, None, data)

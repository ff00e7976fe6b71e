"""What a simulation compares the DP segments with: non-private k-means on the pooled partners' views.

Only for one-machine simulations (the pooled vectors never exist in a real federation): the same vectors the
partners used, the same k, Lloyd from k-means++ (a few public seeds, the best kept). The ratio of the DP
centres' cost to this one, on the same pooled vectors, is the price of privacy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedinsight.federation.task import Simulated
from fedinsight.tasks.segments import kmeans
from fedinsight.tasks.segments.features import customer_vectors, partner_zone
from fedinsight.tasks.segments.options import SegmentsOptions


def pooled_vectors(options: SegmentsOptions, sim: Simulated) -> np.ndarray:
    views = sim.views("analytics")
    parts = [customer_vectors(v.transactions, options.as_of, options.names,  # type: ignore[arg-type]
                              partner_zone(v.meta), v.events).to_numpy() for v in views.values()]
    return np.concatenate(parts) if parts else np.zeros((0, options.dim))


def best_kmeans(x: np.ndarray, k: int, seeds: int = 3) -> np.ndarray:
    """Non-private k-means (unit weights): the best of ``seeds`` k-means++ starts."""
    runs = [kmeans.weighted_kmeans(x, np.ones(len(x)), k, seed, steps=50) for seed in range(seeds)]
    return min(runs, key=lambda c: kmeans.cost(x, c))


def centralized(options: SegmentsOptions, sim: Simulated) -> dict[str, Any]:
    x = pooled_vectors(options, sim)
    if len(x) < options.k:
        return {}
    centres = best_kmeans(x, options.k)
    return {"customers": int(len(x)), "centralized_cost": kmeans.cost(x, centres),
            "centralized_centres": centres.tolist(), VECTORS: x}


VECTORS = "_vectors"
"""The pooled vectors ride along to :func:`merge` (which scores the DP centres on them) and are dropped there."""


def merge(summary: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
    """``summary.json`` with the baseline and the DP centres' cost on the same pooled vectors, and their ratio; the
    baseline is refitted at the job's final k when the job chose or lowered k after the baseline was fitted."""
    baselines = dict(baselines)
    x = baselines.pop(VECTORS, None)
    if x is not None and summary.get("centres") is not None:
        k = len(summary["centres"])
        if k != len(baselines.get("centralized_centres") or []):  # the job chose (--k-range) or lowered its k
            centres = best_kmeans(x, k)
            baselines.update(centralized_cost=kmeans.cost(x, centres), centralized_centres=centres.tolist())
        dp_cost = kmeans.cost(x, np.asarray(summary["centres"]))
        baselines["dp_cost"] = dp_cost
        baselines["cost_ratio"] = dp_cost / baselines["centralized_cost"] if baselines["centralized_cost"] else None
    if baselines:
        summary["baselines"] = baselines
    return summary

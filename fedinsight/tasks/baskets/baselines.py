"""What a simulation compares the DP rules with: the exact figures on the pooled partners' views.

Only for one-machine simulations (the pooled purchases never exist in a real federation): the same rows the
partners used, the same candidates and the same per-customer cut, counted exactly. ``summary.json`` then shows, for
the released pairs, the largest support error and how often the 95 % intervals covered the exact value -- the
price of privacy on this data, not a number any partner releases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fedinsight.federation.task import Simulated
from fedinsight.tasks.baskets.basket import candidate_counts, pair_index, purchases
from fedinsight.tasks.baskets.options import BasketsOptions

ROWS = "_rows"
"""The pooled rows ride along to :func:`merge` (which needs the job's candidates) and are dropped there."""


def pooled_rows(options: BasketsOptions, sim: Simulated) -> list[pd.DataFrame]:
    return [purchases(v, options.as_of)[0] for v in sim.views("analytics").values()]


def exact(options: BasketsOptions, sim: Simulated) -> dict[str, Any]:
    rows = pooled_rows(options, sim)
    if not rows or all(r.empty for r in rows):
        return {}
    return {ROWS: rows}


def compare(summary: dict[str, Any], rows: list[pd.DataFrame], options: BasketsOptions) -> dict[str, Any]:
    """The exact (cut-basket) support and lift of every released pair, the largest support error and coverage."""
    candidates = [c["item"] for c in summary.get("candidates") or []]
    if len(candidates) < 2:
        return {}
    counts = [candidate_counts(r, candidates, options.candidates, options.max_items) for r in rows]
    total = sum(c for c, _, _ in counts)
    items = np.sum([i for _, i, _ in counts], axis=0)
    pairs = np.sum([p for _, _, p in counts], axis=0)
    position = {item: k for k, item in enumerate(candidates)}
    def exact_of(pair: dict[str, Any]) -> tuple[float, float | None]:
        a, b = sorted((position[pair["items"][0]], position[pair["items"][1]]))
        n_ab = float(pairs[pair_index(np.array([a]), np.array([b]), options.candidates)[0]])
        return n_ab / total, (n_ab * total / (items[a] * items[b]) if items[a] and items[b] else None)

    errors, covered = [], []
    for p in summary.get("pairs") or []:
        support, _ = exact_of(p)
        errors.append(abs(p["support"] - support))
        covered.append(p["support_ci95"][0] <= support <= p["support_ci95"][1])
    rules = [{"items": r["items"], "support": s, "lift": lift}
             for r in summary.get("rules") or [] for s, lift in [exact_of(r)]]
    return {"customers": int(total), "support_error_pp_max": 100 * max(errors) if errors else None,
            "support_ci95_coverage": float(np.mean(covered)) if covered else None, "rules": rules}


def merge(summary: dict[str, Any], baselines: dict[str, Any], options: BasketsOptions) -> dict[str, Any]:
    baselines = dict(baselines)
    rows = baselines.pop(ROWS, None)
    if rows is not None:
        baselines.update(compare(summary, rows, options))
    if baselines:
        summary["baselines"] = baselines
    return summary

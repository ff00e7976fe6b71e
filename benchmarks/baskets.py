"""Benchmark of federated DP market-basket rules (the baskets task) on planted co-purchases (prints JSON).

Data: :mod:`fedinsight.data.synth_baskets` writes partner folders (plain CSV, read through each partner's data
view like a user's own folder) with 60 categories and 25 planted pairs: 20 strong (lift >= 4, the "planted top
20") and 5 mild ones on popular categories (lift 1.1-1.3); every other pair is unrelated.

Figures, side by side in one run:

- ``flower``: one run of the real task through Flower's simulation runtime (``Federation.simulate``), every
  partner charged on its ledger, and its wall time;
- ``in_process``: ``draws`` more runs of the task's own partner noising and coordinator code
  (:mod:`fedinsight.tasks.baskets.simulate`, fresh OpenDP noise, no Flower): the median and the worst draw;
- ``exact``: the non-private answer on the pooled views (only a simulation can compute it).

Each run is scored by: the share of the planted top-20 pairs among its top-20 rules (goal >= 90 %), false rules
(a top-20 rule that was not planted and shows lift > 1.5; goal 0), the largest support error of a top-20 rule
against the exact support of the pooled, uncut baskets (goal <= 1 percentage point) and over all released pairs,
and how often the support intervals cover the exact support of the cut baskets (what they are built to cover).

Usage::

    python benchmarks/baskets.py                 # 100,000 customers over 10 partners, epsilon 1 (~3 min here)
    python benchmarks/baskets.py --quick         # 20,000 customers over 5 partners, no Flower run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import Progress

from fedinsight.data.synth_baskets import BasketsConfig, write_baskets
from fedinsight.partner.policy_init import init_partner
from fedinsight.partner.view import PartnerView
from fedinsight.tasks.baskets.basket import baskets, purchases
from fedinsight.tasks.baskets.options import BasketsOptions
from fedinsight.tasks.baskets.simulate import federated_rules

TOP = 20


def exact_supports(frames: list[pd.DataFrame]) -> dict[frozenset[str], float]:
    """Pair -> share of customers (with a purchase) holding both, on the pooled baskets given."""
    customers = sum(f["customer_id"].nunique() for f in frames)
    out: dict[frozenset[str], float] = {}
    for f in frames:
        b = f.drop_duplicates()
        both = b.merge(b, on="customer_id")
        both = both[both["item_x"] < both["item_y"]]
        for (x, y), n in both.groupby(["item_x", "item_y"]).size().items():
            key = frozenset((x, y))
            out[key] = out.get(key, 0.0) + n
    return {k: v / customers for k, v in out.items()}


def score(result: dict[str, Any], truth: dict[str, Any], uncut: dict, cut: dict) -> dict[str, Any]:
    planted = {frozenset(p["items"]) for p in truth["pairs"]}
    top_planted = {frozenset(p["items"]) for p in truth["pairs"][:TOP]}
    rules = result["rules"][:TOP]
    shown = [frozenset(r["items"]) for r in rules]
    false = [r for r, key in zip(rules, shown, strict=True) if key not in planted and r["lift"] > 1.5]

    def err(pairs: list[dict[str, Any]]) -> float:
        return max((abs(p["support"] - uncut.get(frozenset(p["items"]), 0.0)) * 100 for p in pairs), default=0.0)

    covered = [p["support_ci95"][0] <= cut.get(frozenset(p["items"]), 0.0) <= p["support_ci95"][1]
               for p in result["pairs"]]
    coverage = round(float(np.mean(covered)), 4) if covered else None
    return {"planted_top20_found": len(top_planted & set(shown)) / TOP, "false_rules_lift_over_1_5": len(false),
            "support_error_pp_top20_max": round(err(rules), 4),
            "support_error_pp_all_max": round(err(result["pairs"]), 4), "rules": len(rules),
            "pairs_released": len(result["pairs"]), "support_ci95_coverage": coverage}


def summarise(scores: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in scores[0] if isinstance(scores[0][k], int | float)]
    worst = {"planted_top20_found": min, "false_rules_lift_over_1_5": max, "support_error_pp_top20_max": max,
             "support_error_pp_all_max": max, "rules": min, "pairs_released": min, "support_ci95_coverage": min}
    return {"draws": len(scores),
            "median": {k: float(np.median([s[k] for s in scores])) for k in keys},
            "worst": {k: worst.get(k, max)(s[k] for s in scores) for k in keys}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--partners", type=int, default=10)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-flower", action="store_true", help="skip the Flower run (in-process draws only)")
    ap.add_argument("--quick", action="store_true", help="20,000 customers over 5 partners, 3 draws, no Flower")
    args = ap.parse_args(argv)
    if args.quick:
        args.customers, args.partners, args.draws, args.no_flower = 20_000, 5, 3, True
    options = BasketsOptions(epsilon=args.epsilon, top=TOP)
    out: dict[str, Any] = {"customers": args.customers, "partners": args.partners, "epsilon": args.epsilon,
                           "delta": options.delta, "max_items": options.max_items, "candidates": options.candidates,
                           "goals": {"planted_top20_found": ">= 0.9", "false_rules_lift_over_1_5": 0,
                                     "support_error_pp_top20_max": "<= 1", "flower_seconds": "< 300"}}
    with tempfile.TemporaryDirectory(prefix="baskets-bench-") as tmp, Progress(transient=True) as bar:
        root = Path(tmp) / "partners"
        t0 = time.perf_counter()
        truth = write_baskets(root, BasketsConfig(customers=args.customers, partners=args.partners, seed=args.seed))
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        task = bar.add_task("reading partner views", total=len(folders))
        rows = []
        for folder in folders:
            init_partner(folder)
            rows.append(purchases(PartnerView(folder, "analytics").tables())[0])
            bar.advance(task)
        out["data_seconds"] = round(time.perf_counter() - t0, 1)
        uncut = exact_supports(rows)
        cut = exact_supports([baskets(r, options.max_items) for r in rows])
        out["planted"] = [{"items": p["items"], "lift": round(p["lift"], 3), "support": round(p["support"], 5)}
                          for p in truth["pairs"]]
        if not args.no_flower:
            import fedinsight as fi

            task = bar.add_task("Flower simulation", total=None)
            t0 = time.perf_counter()
            run = fi.Federation.from_folder(root).simulate("baskets", epsilon=args.epsilon, top=TOP,
                                                           out=Path(tmp) / "run")
            out["flower"] = {**score(run.summary, truth, uncut, cut), "seconds": round(time.perf_counter() - t0, 1),
                             "epsilon_charged": run.summary["privacy"]["epsilon_charged"]}
            bar.update(task, completed=1, total=1)
        task = bar.add_task("in-process draws", total=args.draws)
        t0 = time.perf_counter()
        scores = []
        for _ in range(args.draws):
            scores.append(score(federated_rules(rows, options), truth, uncut, cut))
            bar.advance(task)
        out["in_process"] = {**summarise(scores), "seconds_per_draw": round((time.perf_counter() - t0) / args.draws, 2)}
        exact = sorted(cut.items(), key=lambda kv: -kv[1])
        out["exact"] = {"pairs_with_a_customer": len(uncut), "largest_cut_supports": [
            {"items": sorted(k), "support": round(v, 5)} for k, v in exact[:5]]}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

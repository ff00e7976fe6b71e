"""Benchmark of quarterly recalibration and of channel x creative x segment, on planted truths (JSON).

**Drift** (``--part drift``; issue 16 item 4): synthetic partners whose customers change behaviour at a planted
date (:data:`SHIFT`: from then on each purchase happens with probability :data:`KEEP` and costs :data:`SCALE`
times as much -- fewer, bigger baskets). Three ``simulate propensity`` runs on Flower's simulation runtime, one
ledger:

- ``q1``: trained from scratch on the quarter before the shift (:data:`Q1`), at ``--epsilon``;
- ``q2_scratch``: from scratch on the newest quarter (:data:`Q2`, labels after the shift), at ``--epsilon``;
- ``q2_recalibrated``: warm-started from ``q1`` on Q2 (``--recalibrate-from``), at half ``--epsilon``.

It prints the previous model's and the new models' calibration error (ECE) and tier accuracy on the newest
held-out customers, both as the DP evaluation releases say (``*_dp_release``: what a real federation sees) and
exactly (``*_exact``: simulation only, the same customers), the drift the report states, and the lifetime
epsilon the ledger shows. Goal (issue 16): the recalibrated model's tier accuracy within 2 points of the
scratch model's, at half its epsilon.

**Creative** (``--part creative``; item 5): the generator's own creatives (``SynthConfig(creatives=True)``, what
``data synth --offers`` writes; :mod:`fedinsight.data.synth_creatives`): one of three creatives per customer and
funnel campaign, and each RFM segment clicks 1.6 / 0.7 = 2.3 times as often on its planted favourite. Over
``--draws`` in-process DP releases of the ``channel-creative`` insight (the partners' own aggregation and OpenDP
noise, the coordinator's suppression and intervals; no Flower), it counts per segment how often the released
best pair's creative is the planted favourite and its pair the exact (noise-free) best, and how often the 95 %
intervals of the released rates cover the exact ones.

Usage::

    python benchmarks/recalibrate.py                     # both parts (drift: 3 Flower runs of a few minutes)
    python benchmarks/recalibrate.py --part creative     # seconds
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

from fedinsight.data.schema import PartnerData
from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.data.synth_creatives import CREATIVES, FAVOURITE, FAVOURITE_MULT, OTHER_MULT

SHIFT = pd.Timestamp("2025-07-01")
KEEP = 0.5
SCALE = 2.5
Q1 = {"start": "2024-01-01", "cutoff": "2025-03-31", "end": "2025-06-30"}
Q2 = {"start": "2024-04-01", "cutoff": "2025-06-30", "end": "2025-09-30"}
AS_OF = "2026-01-01"


def _shifted(frames: dict[str, dict[str, pd.DataFrame]], seed: int) -> dict[str, PartnerData]:
    """The planted behaviour change: after :data:`SHIFT`, fewer and bigger purchases."""
    rng = np.random.default_rng(seed)
    out = {}
    for pid, tables in frames.items():
        tx = tables["transactions"].copy()
        late = (tx["timestamp"] >= SHIFT).to_numpy()
        drop = late & (rng.random(len(tx)) > KEEP)
        tx.loc[late, "amount"] = tx.loc[late, "amount"] * SCALE
        out[pid] = PartnerData(pid, **{**tables, "transactions": tx.loc[~drop].reset_index(drop=True)})
    return out


def _metrics(m: dict[str, Any]) -> dict[str, float | None]:
    return {k: None if m.get(k) is None else round(float(m[k]), 4) for k in ("auc", "ece", "tier_accuracy")}


def drift(args: argparse.Namespace, bar: Progress) -> dict[str, Any]:
    import fedinsight as fi
    from fedinsight.data.federation import write_partner_folder
    from fedinsight.partner.policy_init import init_federation

    frames, _ = generate_partner_frames(SynthConfig(customers=args.customers, partners=args.partners,
                                                    seed=args.seed))
    with tempfile.TemporaryDirectory(prefix="recalibrate-bench-") as scratch:
        tmp = args.keep or scratch  # --keep FOLDER: the three run folders (summaries, reports) stay there
        root = Path(tmp) / "partners"
        write_partner_folder(_shifted(frames, args.seed), root)
        init_federation(root)
        fed = fi.Federation.from_folder(root)
        db = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        common = {"rounds": args.rounds, "db": db, "budget": 10.0}
        runs: dict[str, Any] = {}
        plan = [("q1", Q1, args.epsilon, None), ("q2_scratch", Q2, args.epsilon, None),
                ("q2_recalibrated", Q2, args.epsilon / 2, "q1")]
        task = bar.add_task("Flower runs", total=len(plan))
        for name, window, epsilon, source in plan:
            t0 = time.perf_counter()
            extra = {"recalibrate_from": str(Path(tmp) / source)} if source else {}
            run = fed.simulate("propensity", out=Path(tmp) / name, epsilon=epsilon, **window, **common, **extra)
            s = run.summary
            runs[name] = {"window": window, "epsilon": epsilon, "seconds": round(time.perf_counter() - t0, 1),
                          "federated_dp_release": _metrics(s["metrics"]["federated"]),
                          "federated_exact": _metrics(s["metrics"].get("federated_exact") or {}),
                          "centralized_no_dp": _metrics(s["metrics"].get("centralized") or {}),
                          "ledger_epsilon_charged": round(s["privacy"]["ledger_epsilon_charged_this_job"], 4)}
            if "recalibration" in s:
                recal = s["recalibration"]
                runs[name].update(previous_dp_release=_metrics(s["metrics"]["previous"]),
                                  previous_exact=_metrics(s["metrics"].get("previous_exact") or {}),
                                  drift=recal["drift"]["words"],
                                  calibration_in_the_large=recal["drift"]["calibration_in_the_large"],
                                  lifetime_epsilon_max=round(recal["lifetime_epsilon_max"], 4),
                                  quarters_epsilon_sum=round(recal["quarters_epsilon_sum"], 4),
                                  history_models=len(recal["history"]))
            bar.advance(task)
    scratch, recal = runs["q2_scratch"]["federated_exact"], runs["q2_recalibrated"]["federated_exact"]
    gap = None if scratch["tier_accuracy"] is None or recal["tier_accuracy"] is None \
        else round(scratch["tier_accuracy"] - recal["tier_accuracy"], 4)
    return {"customers": args.customers, "partners": args.partners, "rounds": args.rounds,
            "shift": {"from": str(SHIFT.date()), "purchase_kept": KEEP, "amount_scale": SCALE}, "runs": runs,
            "tier_accuracy_gap_scratch_minus_recalibrated_exact": gap,
            "goal": "recalibrated tier accuracy within 0.02 of scratch at half the epsilon",
            "goal_met": None if gap is None else gap <= 0.02}


def creative(args: argparse.Namespace, bar: Progress) -> dict[str, Any]:
    from fedinsight.data.synth import CAMPAIGN_CHANNELS
    from fedinsight.tasks.insights.catalogue import parse_batch
    from fedinsight.tasks.insights.results import paired_estimates
    from fedinsight.tasks.insights.simulate import release_in_process

    frames, _ = generate_partner_frames(SynthConfig(customers=args.creative_customers, partners=args.partners,
                                                    seed=args.seed, creatives=True))
    partners = {pid: PartnerData(pid, **tables) for pid, tables in frames.items()}
    batch = parse_batch({"features": {"as_of": AS_OF}, "epsilon": args.epsilon, "queries": [
        {"name": "channel-creative", "kind": "channel_creative", "channels": list(CAMPAIGN_CHANNELS),
         "creatives": list(CREATIVES), "by": "rfm_segment", "max_pairs_per_customer": 2}]})
    exact = release_in_process(partners, batch, exact=True)[0]["result"]["groups"]
    exact_best = {g["rfm_segment"]: g["best_pair"] for g in exact}
    found_favourite = {s: 0 for s in exact_best}
    found_exact = {s: 0 for s in exact_best}
    released = {s: 0 for s in exact_best}
    hits = total = 0
    suppressed = cells = 0
    task = bar.add_task("DP releases", total=args.draws)
    for _ in range(args.draws):
        ins = release_in_process(partners, batch)[0]
        suppressed, cells = suppressed + ins["suppressed_groups"], cells + ins["groups"]
        for g, e in zip(ins["result"]["groups"], exact, strict=True):
            seg, best = g["rfm_segment"], g["best_pair"]
            if best is None:
                continue
            released[seg] += 1
            found_favourite[seg] += best["creative"] == FAVOURITE[seg]
            eb = exact_best[seg]
            found_exact[seg] += eb is not None and (best["channel"], best["creative"]) == (eb["channel"],
                                                                                           eb["creative"])
            for _, est, ref in paired_estimates(g["cells"], e["cells"]):
                total += 1
                hits += est["ci95"][0] - 1e-9 <= ref["value"] <= est["ci95"][1] + 1e-9
        bar.advance(task)
    return {"customers": args.creative_customers, "partners": args.partners, "epsilon": args.epsilon,
            "draws": args.draws,
            "creatives": list(CREATIVES), "planted_favourite": FAVOURITE,
            "planted_click_rate_multiplier": {"favourite": FAVOURITE_MULT, "other": OTHER_MULT},
            "exact_best_pair": {s: None if b is None else f"{b['channel']} · {b['creative']}"
                                for s, b in exact_best.items()},
            "per_segment": {s: {"released_share": round(released[s] / args.draws, 3),
                                "favourite_creative_found": round(found_favourite[s] / max(released[s], 1), 3),
                                "exact_best_pair_found": round(found_exact[s] / max(released[s], 1), 3)}
                            for s in exact_best},
            "interval_coverage": round(hits / max(total, 1), 4), "estimates_checked": total,
            "suppressed_share": round(suppressed / max(cells, 1), 4)}


def main(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("drift", "creative", "both"), default="both")
    ap.add_argument("--customers", type=int, default=30_000, help="drift part (creative: --creative-customers)")
    ap.add_argument("--creative-customers", type=int, default=60_000)
    ap.add_argument("--partners", type=int, default=3)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--keep", default="", help="drift: keep the partner and run folders here (an empty folder)")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {}
    with Progress(transient=True) as bar:
        if args.part in ("creative", "both"):
            out["channel_creative"] = creative(args, bar)
        if args.part in ("drift", "both"):
            out["recalibration"] = drift(args, bar)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

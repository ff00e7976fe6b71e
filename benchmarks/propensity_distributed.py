"""Benchmark: propensity with local noise vs distributed noise under SecAgg+, side by side in one run (prints JSON).

Goal (issue 14, item 4): CDNOW, 10 partners, epsilon 0.3 (delta 1e-6): the model trained with
``--noise-model distributed-secagg`` reaches an AUC >= 0.99 x the centralized non-private model's.

Why it can: with local noise each partner runs DP-SGD on its own ~1/10 of the customers and adds the full noise
to its own update; with distributed noise each round is one full-batch DP-SGD step of the whole federation, whose
noise (split into discrete-Gaussian shares that only sum up under SecAgg+) is the one the accountant prices, on a
gradient summed over all ~19,000 training customers.

What runs: two ``fedinsight simulate propensity`` commands into the same run folder, so on the same simulated
partners (same partition, and the same held-out customers: each partner keeps its secret split key in its vault)
and the same ledgers (``--budget`` 1 covers both jobs at epsilon 0.3); Flower's real simulation runtime on Ray,
SecAgg+ on its legacy workflow for the distributed run, exactly as a user would type them. Each run's summary
also holds the centralized non-private model trained on the pooled training customers of that same split (a
simulation-only baseline), so the two runs' centralized AUCs agree up to its training's randomness. The AUCs
compared are *exact* AUCs of the released models on the same held-out customers (``federated_exact``, simulation
only); the noisy DP evaluation the federation itself reports is listed beside them. With distributed noise the
feature statistics, the LTV histogram and that evaluation are SecAgg+ sums too (``release_noise``,
``secagg_releases``: each sum's noise sd).

    python benchmarks/propensity_distributed.py                 # 10 partners, epsilon 0.3, 20 rounds each
    python benchmarks/propensity_distributed.py --rounds 10 --partners 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MAX_CUSTOMERS = 25_000
"""Public bound on a partner's customers for the SecAgg+ grid: all of CDNOW (23,570) fits, whatever the partition."""


def run_one(noise_model: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out = work / "federation"  # one simulated world for both runs: same partners, same held-out customers
    cmd = [sys.executable, "-m", "fedinsight.cli", "simulate", "propensity", "--dataset", "cdnow",
           "--partners", str(args.partners), "--rounds", str(args.rounds), "--partition", args.partition,
           "--alpha", str(args.alpha), "--model", args.model, "--seed", str(args.seed), "--delta", "1e-6",
           "--epsilon", str(args.epsilon), "--noise-model", noise_model, "--out", str(out), "--cpus", str(args.cpus),
           "--budget", "1", "--json"]
    if noise_model == "distributed-secagg":
        cmd += ["--max-customers", str(MAX_CUSTOMERS)]
    print(f"running {noise_model} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        return {"noise_model": noise_model, "error": proc.stderr.strip().splitlines()[-3:] or proc.returncode}
    summary = json.loads((out / "summary.json").read_text())
    (work / f"summary-{noise_model}.json").write_text(json.dumps(summary, indent=1))  # the next run overwrites it
    metrics, privacy = summary["metrics"], summary["privacy"]
    exact, noisy, cen = metrics["federated_exact"], metrics["federated"], metrics["centralized"]
    result: dict[str, Any] = {
        "noise_model": noise_model,
        "auc_exact": exact["auc"], "centralized_auc": cen["auc"], "auc_ratio_to_centralized": exact["auc"] / cen["auc"],
        "auc_dp_evaluation": noisy.get("auc"), "log_loss_exact": exact["log_loss"], "mae_exact": exact["mae"],
        "lift_top_decile_exact": exact["lift_top_decile"], "held_out_customers": exact["n"],
        "epsilon_spent_max": privacy["epsilon_spent_max"],
        "ledger_agrees": privacy.get("accountants_agree_with_ledger"),
        "training_noise_multiplier": privacy["plan"]["noise_multiplier"],
        "sample_rate": privacy["plan"]["sample_rate"], "steps": privacy["plan"]["steps_per_round"] * args.rounds,
        "trust_model": privacy.get("trust_model"), "release_noise": privacy.get("release_noise"),
        "wall_s": round(elapsed, 1),
    }
    if "secagg" in privacy:
        s = privacy["secagg"]
        result["secagg"] = {k: s[k] for k in ("noise_shares", "contributors_min", "rounds_unmasked", "sensitivity",
                                              "grid_step", "overflow_probability")}
        result["secagg_round_s"] = [r.get("secagg_s") for r in metrics["per_round"]]
        result["secagg_releases"] = {name: {k: r.get(k) for k in ("contributors", "sensitivity", "l2",
                                                                   "noise_sd_of_the_sum")}
                                     for name, r in (s.get("releases") or {}).items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--model", default="logreg", choices=("logreg", "mlp"))
    parser.add_argument("--partition", default="dirichlet", choices=("iid", "dirichlet"))
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fedinsight-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = {m: run_one(m, args, work) for m in ("local", "distributed-secagg")}
    local, dist = runs["local"], runs["distributed-secagg"]
    ok = "error" not in local and "error" not in dist
    report = {
        "benchmark": "propensity_distributed", "dataset": "cdnow", "partners": args.partners,
        "epsilon": args.epsilon, "delta": 1e-6, "rounds": args.rounds, "model": args.model,
        "partition": args.partition + (f"(alpha={args.alpha})" if args.partition == "dirichlet" else ""),
        "seed": args.seed,
        "auc_side_by_side": None if not ok else {
            "centralized_non_private": dist["centralized_auc"], "local_noise": local["auc_exact"],
            "distributed_noise": dist["auc_exact"],
            "centralized_in_the_local_run": local["centralized_auc"],
            "same_held_out_customers": local["held_out_customers"] == dist["held_out_customers"]},
        "goal": None if not ok else {
            "distributed_auc_over_centralized": dist["auc_ratio_to_centralized"],
            "meets_0.99_centralized": dist["auc_ratio_to_centralized"] >= 0.99,
            "local_auc_over_centralized": local["auc_ratio_to_centralized"]},
        "runs": runs,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

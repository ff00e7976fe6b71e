"""Federated recommender at its defaults against its baselines, by privacy level and partition scheme.

Run: PYTHONPATH=. .venv/bin/python benchmarks/recommend.py  (MovieLens-100K, 8 partners, the task's default
rounds, epsilon 8/3/1, partition schemes iid/zip/dirichlet: 9 runs; one 20-round run took 5-12 min on 2 cores shared
at load 13, most of it the partners' final evaluation with the blend)
Smaller: --epsilons 8,1 --schemes iid,zip --rounds 20.

Every run is one ``fedinsight simulate recommend`` (Flower simulation runtime) at the task's *defaults*: only
the epsilon, the rounds and the seed are passed, no hand-picked setting. Per run, side by side (HR@10, NDCG@10):

* ``served`` -- what partners serve: each partner's blend of the federated model (personalised on the partner)
  with its own alone-model, the weight chosen on its validation customers (docs/recommender.md, "Joining never
  hurts"); exact, measured by the simulation driver on every partner's test customers from the models the
  partners keep (never released by a deployed partner);
* ``shared`` -- the shared item table with each customer's own embedding: the DP-noised evaluation the
  coordinator receives (private runs), with its 95 % half-width;
* ``federated_personal`` -- the federated model personalised on the partner, without the blend (exact);
* ``partner_alone`` -- each partner's alone-model chosen on its validation customers (item-item or MF, exact);
  ``local_only`` -- each partner's BPR-MF alone (the older baseline);
* ``popularity`` and ``centralized`` (non-private BPR-MF on the pooled customers), on the same split.

Then per run: how many partners' served model is below their alone-model on the test customers (the choice was
made on validation customers, so a small test-side gap is possible), and the goals: served > popularity and
served >= partner-alone at every epsilon and scheme. ``--step-times`` adds the DP / non-private step time.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def step_times(dim: int, partners: int, seed: int, repeats: int, batch: int | None) -> dict[str, float]:
    """Per-step seconds of non-private and customer-level DP training of the same model on one partner's data.

    Same partner, dimension, optimizer (SGD) and expected customers per step: ``batch`` customers, or
    all of them (``None``: full batch, what private runs use by default; DP samples at rate q = batch/N
    with secure-mode noise). Short runs of both kinds alternate, so load from other processes on a
    shared machine hits both alike; the ratio of the fastest runs is the cost of DP itself, the ratio
    of the medians is reported too.
    """
    from fedinsight.data.federation import PartitionSpec, load_federation
    from fedinsight.models.ranking import Catalogue, leave_latest_out
    from fedinsight.models.recommender import BPRConfig, DPConfig, ItemParams, LocalTrainer
    from fedinsight.privacy.sparse_dp import noise_generator

    parts = load_federation("movielens-100k", PartitionSpec(partners=partners, seed=seed))
    data = next(iter(parts.values()))
    catalogue = Catalogue.from_items(data.items)  # type: ignore[arg-type]
    split = leave_latest_out(data.interactions, catalogue)  # type: ignore[arg-type]
    size = split.num_customers if batch is None else batch
    dp = DPConfig(noise_multiplier=1.0, clip=1.0, sample_rate=min(1.0, size / split.num_customers))
    config = BPRConfig(dim=dim, batch_customers=size, optimizer="sgd")
    items = ItemParams.init(catalogue.num_items, dim, seed)
    generator = noise_generator()
    epochs = max(1, round(6 * size / split.num_customers))  # about six steps per run
    LocalTrainer(split, catalogue.num_items, config, seed=seed).train(items, 1, dp, generator)  # warm-up
    times: dict[str, list[float]] = {"non_private": [], "dp": []}
    for _ in range(repeats):
        for name, kind in (("non_private", None), ("dp", dp)):
            trainer = LocalTrainer(split, catalogue.num_items, config, seed=seed)
            _, stats = trainer.train(items, epochs, kind, generator if kind else None)
            times[name].append(stats.seconds / stats.steps)
    fast_plain, fast_dp = min(times["non_private"]), min(times["dp"])
    med_plain, med_dp = float(np.median(times["non_private"])), float(np.median(times["dp"]))
    return {"customers": split.num_customers, "customers_per_step": size, "dim": dim, "runs": repeats,
            "non_private_step_ms": round(1000 * fast_plain, 3), "dp_step_ms": round(1000 * fast_dp, 3),
            "dp_over_non_private": round(fast_dp / fast_plain, 3),
            "median_non_private_step_ms": round(1000 * med_plain, 3), "median_dp_step_ms": round(1000 * med_dp, 3),
            "median_dp_over_non_private": round(med_dp / med_plain, 3)}


def _pick(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if not metrics:
        return None
    return {key: metrics.get(key) for key in ("hr@10", "ndcg@10", "ci95_halfwidth") if metrics.get(key) is not None}


def _below_alone(per_partner: dict[str, Any]) -> list[str]:
    """Partners whose served HR@10 on their test customers is below their alone-model's."""
    out = []
    for name, row in per_partner.items():
        if (isinstance(row, dict) and "served" in row and "partner_alone" in row
                and row["served"]["hr@10"] < row["partner_alone"]["hr@10"]):
            out.append(name)
    return out


def main() -> None:
    from fedinsight.core.errors import FedinsightError
    from fedinsight.simulation.options import SimulationOptions
    from fedinsight.simulation.run import simulate
    from fedinsight.tasks.recommend.options import RecommendOptions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--partners", type=int, default=8,
                        help="8, as issue 18 measured: split by zip region into 10, one partner has 18 customers, "
                             "fewer than a partner's evaluation minimum (50)")
    parser.add_argument("--rounds", type=int, default=RecommendOptions().rounds)
    parser.add_argument("--epsilons", default="8,3,1", help="comma-separated; inf for a non-private run")
    parser.add_argument("--schemes", default="iid,zip,dirichlet", help="partition schemes (data/partition.py)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-times", action="store_true", help="also time DP vs non-private steps")
    parser.add_argument("--step-repeats", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="fedinsight-rec-bench-"))
    runs: dict[str, Any] = {}
    goals: dict[str, Any] = {}
    try:
        for scheme in args.schemes.split(","):
            for eps_text in args.epsilons.split(","):
                eps = float(eps_text)
                key = f"{scheme} eps {eps_text}"
                sim = SimulationOptions(dataset=args.dataset, partners=args.partners, seed=args.seed, partition=scheme,
                                        out=str(root / f"{scheme}-eps-{eps_text}"), overwrite=True)
                start = time.perf_counter()
                try:
                    summary = simulate("recommend", sim, {"rounds": args.rounds, "epsilon": eps,
                                                          "seed": args.seed}).summary
                except FedinsightError as exc:  # e.g. a zip region with fewer customers than an evaluation needs
                    runs[key] = {"error": str(exc)}
                    continue
                m = summary["metrics"]
                per_partner = {k: v for k, v in summary.get("per_partner", {}).items() if k != "note"}
                shared = m.get("federated_global") if not math.isfinite(eps) else m.get("federated")
                runs[key] = {
                    "served": _pick(m.get("served")), "shared": _pick(shared),
                    "federated_personal": _pick(m.get("federated_personal")),
                    "partner_alone": _pick(m.get("partner_alone")), "local_only": _pick(m.get("local_only")),
                    "popularity": _pick(m.get("popularity")), "centralized": _pick(m.get("centralized")),
                    "blend_weights": {k: v.get("blend_weight") for k, v in per_partner.items()},
                    "alone_models": {k: v.get("alone_model") for k, v in per_partner.items()},
                    "partners_served_below_alone_on_test": _below_alone(per_partner),
                    "epsilon_spent_max": summary["privacy"].get("epsilon_spent_max"),
                    "simulation_s": summary["timing"]["simulation_s"], "wall_s": round(time.perf_counter() - start, 1),
                }
                served, pop, alone = (runs[key][name] for name in ("served", "popularity", "partner_alone"))
                if served and pop:
                    goals[f"{key}: served > popularity (HR@10)"] = {
                        "value": [served["hr@10"], pop["hr@10"]], "met": served["hr@10"] > pop["hr@10"]}
                if served and alone:
                    goals[f"{key}: served >= partner alone (HR@10)"] = {
                        "value": [served["hr@10"], alone["hr@10"]], "met": served["hr@10"] >= alone["hr@10"]}
        shown = ("dim", "noise_model", "blend", "personalize_epochs", "dp_lr", "clip")
        defaults = {k: v for k, v in RecommendOptions().settings().items() if k in shown}
        out: dict[str, Any] = {"dataset": args.dataset, "partners": args.partners, "rounds": args.rounds,
                               "seed": args.seed, "defaults": defaults, "runs": runs, "goals": goals}
        if args.step_times:
            dim = RecommendOptions().dim
            out["dp_step_time"] = {"full_batch": step_times(dim, args.partners, args.seed, args.step_repeats, None),
                                   "batch_16": step_times(dim, args.partners, args.seed, args.step_repeats, 16)}
        print(json.dumps(out, indent=2))
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

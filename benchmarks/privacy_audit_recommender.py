"""One-run privacy audit of the recommender (BPR-MF item side), DP and not, with planted rare items.

    python benchmarks/privacy_audit_recommender.py [--quick] [--epsilons 1 3 8]

Also run by ``benchmarks/privacy_audit_one_run.py`` (its ``recommender`` block). Per regime, one training
run of the product's ``LocalTrainer`` (``fedinsight.models.recommender``: customer-level clipping and
Gaussian noise on the shared item table, Poisson sampling, noise from OS entropy) on ``--customers`` real
MovieLens-100K customers plus ``--canaries`` canary customers, each put in by a fair coin (OS entropy).
Every canary customer has one planted item nobody else has (a new catalogue entry) besides a few real
items. What a partner releases is the item table; the auditor scores each canary by its planted item's
bias there (trained on -> pushed up), guesses, and turns the right guesses into an epsilon lower bound
at 95 % (``fedinsight.privacy.one_run_audit``).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedinsight.data.loaders import load_movielens_100k
from fedinsight.models.ranking import Catalogue, leave_latest_out
from fedinsight.models.recommender import BPRConfig, DPConfig, ItemParams, LocalTrainer
from fedinsight.privacy.dpsgd import plan_dpsgd
from fedinsight.privacy.one_run_audit import best_audit, draw_inclusion


@dataclass(frozen=True)
class RecommenderAuditConfig:
    """Sizes and training settings (the recommend task's defaults where it has them)."""

    customers: int = 300
    canaries: int = 500
    real_items_per_canary: int = 4
    epochs: int = 30
    dim: int = 16
    sample_rate: float = 0.1
    clip: float = 1.0
    delta: float = 1e-5
    beta: float = 0.05


def _interactions(config: RecommenderAuditConfig, interactions: pd.DataFrame,
                  included: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
    """Real customers' rows plus the included canaries' rows; the canary items' ids in canary order."""
    rng = np.random.default_rng(secrets.randbits(128))
    users = interactions["customer_id"].drop_duplicates().to_numpy()
    real = interactions[interactions["customer_id"].isin(rng.choice(users, config.customers, replace=False))]
    real_items = interactions["item_id"].drop_duplicates().to_numpy()
    canary_items = [f"canary-item-{k}" for k in range(config.canaries)]
    t0 = pd.Timestamp("2000-01-01")
    rows = []
    for k in np.flatnonzero(included):  # the planted item first: leave-latest-out keeps it in training
        rows.append((f"canary-{k}", canary_items[k], t0))
        for j, item in enumerate(rng.choice(real_items, config.real_items_per_canary, replace=False)):
            rows.append((f"canary-{k}", str(item), t0 + pd.Timedelta(days=j + 1)))
    canaries = pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp"])
    frame = pd.concat([real[["customer_id", "item_id", "timestamp"]].astype({"item_id": str}), canaries])
    return frame, canary_items


def audit_run(config: RecommenderAuditConfig, interactions: pd.DataFrame, items: pd.DataFrame,
              epsilon: float | None) -> dict[str, object]:
    """One training run with fresh canary coins; the one-run bound from the released item table."""
    included = draw_inclusion(config.canaries)
    frame, canary_items = _interactions(config, interactions, included)
    catalogue = Catalogue.from_ids([*items["item_id"].astype(str), *canary_items], attribute=None)
    split = leave_latest_out(frame, catalogue)
    steps = config.epochs * max(1, round(1 / config.sample_rate))
    dp, claimed = None, None
    if epsilon is not None:
        plan = plan_dpsgd(epsilon, config.delta, sample_rate=config.sample_rate, steps_per_round=steps, rounds=1,
                          max_grad_norm=config.clip, gaussian_releases=0, gaussian_share=1e-6)
        dp, claimed = DPConfig(plan.noise_multiplier, config.clip, config.sample_rate), plan.planned_epsilon()
    bpr = BPRConfig(dim=config.dim)
    trainer = LocalTrainer(split, catalogue.num_items, bpr)  # seed None: batches and noise from OS entropy
    start = ItemParams.init(catalogue.num_items, bpr.dim, secrets.randbits(31), bpr.init_scale)
    released, _ = trainer.train(start, config.epochs, dp)
    index = catalogue.index()
    scores = released.bias[[index[c] for c in canary_items]].astype(float)
    audit = best_audit(scores, included, delta=config.delta, beta=config.beta)
    return {"training": "no DP" if epsilon is None else "DP (customer-level clipping + Gaussian noise)",
            "target_epsilon": epsilon, "claimed_epsilon": None if claimed is None else round(claimed, 4),
            "empirical_epsilon_lower_bound_95": round(audit.epsilon_lower_bound, 4), "one_run_audit": audit.as_dict()}


def run(config: RecommenderAuditConfig, epsilons: list[float]) -> dict[str, object]:
    """Every regime side by side on MovieLens-100K customers, one run each."""
    interactions, _, items = load_movielens_100k()
    rows = [audit_run(config, interactions, items, eps) for eps in [None, *epsilons]]
    private = [r["empirical_epsilon_lower_bound_95"] for r in rows[1:]]
    return {
        "model": "BPR-MF item side (fedinsight.models.recommender) on MovieLens-100K customers + canary customers",
        "config": config.__dict__, "results": rows,
        "goal_nonprivate_bound_above_every_dp_bound": rows[0]["empirical_epsilon_lower_bound_95"] > max(private,  # type: ignore[operator]
                                                                                                      default=0.0),
        "goal_every_dp_bound_below_claimed": all(
            r["empirical_epsilon_lower_bound_95"] <= r["claimed_epsilon"] for r in rows[1:]),  # type: ignore[operator]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    args = parser.parse_args()
    config = RecommenderAuditConfig(customers=200, canaries=250, epochs=5) if args.quick else RecommenderAuditConfig()
    start = time.perf_counter()
    print(json.dumps({**run(config, args.epsilons), "seconds": round(time.perf_counter() - start, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

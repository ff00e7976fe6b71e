"""One-run privacy audit (Steinke, Nasr, Jagielski 2023) and LiRA of the propensity model, DP and not.

    python benchmarks/privacy_audit_one_run.py [--quick] [--epsilons 1 3 8] [--canaries 500] [--models 16]

What it does, per training regime (no DP, then DP-SGD at each ``--epsilons``), all in one process:

1. Training data: ``--customers`` real CDNOW customers (few, as on a small partner, so that a non-private
   MLP can memorise) plus ``--canaries`` fake "canary" customers, each put in with probability 1/2 from
   OS entropy. A canary is an input-space outlier with a random buy label (the paper's mislabelled input
   canaries): all features drawn at random, away from the real customers' clusters, so only memorising
   it fits its label.
2. ``--models`` independent training runs of the product's propensity MLP (``fedinsight.models.propensity``)
   through the product's own trainers (``fedinsight.privacy.dpsgd.train_dpsgd``: Opacus per-customer
   clipping, Poisson sampling, noise from OS entropy; the noise calibrated by ``plan_dpsgd`` for the
   claimed epsilon; ``train_sgd`` with the same sampling and steps for no DP), each with fresh coins.
3. One-run audit of each run: score each canary by minus its loss, guess the top k as IN, and turn the
   correct guesses into an epsilon lower bound at 95 % confidence (``fedinsight.privacy.one_run_audit``).
   The JSON shows the first run's bound (one run is all the method needs) and the bound of every run.
4. LiRA (online, fixed variance) over all runs, each in turn the target and the others its shadows:
   TPR at 0.1 % FPR on the canaries (``fedinsight.privacy.lira``).

5. The recommender (``privacy_audit_recommender.py``): the same one-run audit with canary customers who
   each hold a planted rare item, scored on the released item table; one run per regime.

Goal (issue 14): the non-private run's bound clearly above every DP run's, and every DP run's bound
below its claimed epsilon.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.nn import functional as F

from fedinsight.models.propensity import MLP_HIDDEN, PropensityNet, propensity_loss
from fedinsight.privacy.dpsgd import plan_dpsgd, train_dpsgd, train_sgd
from fedinsight.privacy.lira import leave_one_out_scores, tpr_at_fpr
from fedinsight.privacy.one_run_audit import best_audit, draw_inclusion


@dataclass(frozen=True)
class AuditConfig:
    """Sizes and training settings of one audit (the same for every regime)."""

    customers: int = 300
    canaries: int = 500
    models: int = 16
    epochs: int = 300
    sample_rate: float = 0.1
    lr: float = 0.5
    max_grad_norm: float = 3.0
    canary_scale: float = 1.0
    delta: float = 1e-5
    beta: float = 0.05
    kind: str = "mlp"
    hidden: tuple[int, ...] = MLP_HIDDEN


def make_canaries(m: int, d: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``m`` fake customers: independent Gaussian features of spread ``scale`` with a fair-coin buy label.

    Real features are standardised but clustered (most CDNOW customers bought once, in the same months);
    every feature varying at once puts each canary in an empty region, where only memorising it fits its
    random label. OS entropy: nobody can predict them."""
    rng = np.random.default_rng(secrets.randbits(128))
    return (rng.normal(0.0, scale, (m, d)).astype(np.float32), (rng.random(m) < 0.5).astype(np.float32))


def _train(config: AuditConfig, x: np.ndarray, y: np.ndarray, epsilon: float | None) -> torch.nn.Module:
    """One run of the product's trainer on these customers (DP-SGD at ``epsilon``, or no DP)."""
    n = len(x)
    steps = max(1, round(config.epochs / config.sample_rate))
    data = (torch.as_tensor(x), torch.as_tensor(y), torch.zeros(n))  # spend head unused: its target is 0
    torch.manual_seed(secrets.randbits(63))
    model = PropensityNet(x.shape[1], config.kind, config.hidden)
    if epsilon is None:
        trained, _ = train_sgd(model, data, propensity_loss, sample_rate=config.sample_rate, steps=steps,
                               lr=config.lr, seed=secrets.randbits(31), max_grad_norm=config.max_grad_norm)
        return trained
    plan = plan_dpsgd(epsilon, config.delta, sample_rate=config.sample_rate, steps_per_round=steps, rounds=1,
                      max_grad_norm=config.max_grad_norm, gaussian_releases=0, gaussian_share=1e-6)
    trained, _ = train_dpsgd(model, data, propensity_loss, noise_multiplier=plan.noise_multiplier,
                             sample_rate=config.sample_rate, steps=steps, max_grad_norm=config.max_grad_norm,
                             lr=config.lr)  # seed=None: sampling and noise from OS entropy, as on a partner
    return trained


def claimed_epsilon(config: AuditConfig, epsilon: float) -> float:
    """What the accountant claims for the run (the larger of Opacus's and dp_accounting's RDP figures)."""
    steps = max(1, round(config.epochs / config.sample_rate))
    return plan_dpsgd(epsilon, config.delta, sample_rate=config.sample_rate, steps_per_round=steps, rounds=1,
                      max_grad_norm=config.max_grad_norm, gaussian_releases=0, gaussian_share=1e-6).planned_epsilon()


@torch.no_grad()
def _canary_view(model: torch.nn.Module, cx: np.ndarray, cy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per canary: minus its buy-head loss (the one-run score) and LiRA's logit confidence."""
    model.eval()
    logit, _ = model(torch.as_tensor(cx))
    y = torch.as_tensor(cy)
    loss = F.binary_cross_entropy_with_logits(logit, y, reduction="none").double().numpy()
    # log(p / (1 - p)) of the true label is the signed logit: exact, where 1 - p would round to 0
    return -loss, torch.where(y > 0.5, logit, -logit).double().numpy()


def audit_regime(config: AuditConfig, x: np.ndarray, y: np.ndarray, epsilon: float | None,
                 progress: Progress | None = None, bar: object = None) -> dict[str, object]:
    """Train ``config.models`` runs with fresh canary coins; one-run bound per run and LiRA over all."""
    cx, cy = make_canaries(config.canaries, x.shape[1], config.canary_scale)
    bounds, confs, coins, audits = [], [], [], []
    for _ in range(config.models):
        inside = draw_inclusion(config.canaries)
        model = _train(config, np.vstack([x, cx[inside]]), np.r_[y, cy[inside]].astype(np.float32), epsilon)
        score, conf = _canary_view(model, cx, cy)
        result = best_audit(score, inside, delta=config.delta, beta=config.beta)
        audits.append(result)
        bounds.append(result.epsilon_lower_bound)
        confs.append(conf)
        coins.append(inside)
        if progress is not None:
            progress.advance(bar)  # type: ignore[arg-type]
    lira_scores, labels = leave_one_out_scores(np.array(confs), np.array(coins))
    lira = tpr_at_fpr(lira_scores, labels, 1e-3)
    return {
        "training": "no DP" if epsilon is None else "DP-SGD",
        "target_epsilon": epsilon,
        "claimed_epsilon": None if epsilon is None else round(claimed_epsilon(config, epsilon), 4),
        "empirical_epsilon_lower_bound_95": round(bounds[0], 4),
        "one_run_audit": audits[0].as_dict(),
        "bounds_of_every_run": [round(b, 3) for b in bounds],
        "lira_tpr_at_0.1pct_fpr": round(lira.tpr, 4),
        "lira": lira.as_dict(),
    }


def run(config: AuditConfig, x: np.ndarray, y: np.ndarray, epsilons: list[float],
        console: Console | None = None) -> dict[str, object]:
    """Every regime side by side, with the issue's two goals checked on the first run of each."""
    regimes: list[float | None] = [None, *epsilons]
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console or Console(stderr=True), disable=console is None)
    rows = []
    with progress:
        bar = progress.add_task("training", total=len(regimes) * config.models)
        for eps in regimes:
            progress.update(bar, description="no DP" if eps is None else f"DP-SGD eps={eps:g}")
            rows.append(audit_regime(config, x, y, eps, progress, bar))
    plain, private = rows[0], rows[1:]
    top_private = max((r["empirical_epsilon_lower_bound_95"] for r in private), default=0.0)
    return {
        "results": rows,
        "goal_nonprivate_bound_above_every_dp_bound": plain["empirical_epsilon_lower_bound_95"] > top_private,  # type: ignore[operator]
        "goal_every_dp_bound_below_claimed": all(
            r["empirical_epsilon_lower_bound_95"] <= r["claimed_epsilon"] for r in private),  # type: ignore[operator]
    }


def cdnow_customers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random CDNOW customers' standardised calibration features and buy-again labels."""
    from privacy_audit import cdnow_features  # the same features as the loss/shadow audit

    x, y = cdnow_features()
    pick = np.random.default_rng(secrets.randbits(64)).choice(len(x), n, replace=False)
    return x.numpy()[pick], y.numpy()[pick].astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    parser.add_argument("--customers", type=int, default=None, help="real training customers")
    parser.add_argument("--canaries", type=int, default=None)
    parser.add_argument("--models", type=int, default=None, help="training runs per regime (LiRA's shadows)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--no-recommender", action="store_true", help="audit the propensity model only")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
    base = AuditConfig(customers=200, canaries=250, models=3, epochs=150) if args.quick else AuditConfig()
    overrides = {k: v for k in ("customers", "canaries", "models", "epochs") if (v := getattr(args, k)) is not None}
    config = AuditConfig(**{**base.__dict__, **overrides})
    torch.set_num_threads(1)
    start = time.perf_counter()
    x, y = cdnow_customers(config.customers)
    report: dict[str, object] = {
        "model": f"propensity {config.kind} (fedinsight.models.propensity) on CDNOW features",
        "config": config.__dict__, **run(config, x, y, args.epsilons, Console(stderr=True))}
    if not args.no_recommender:
        from privacy_audit_recommender import RecommenderAuditConfig
        from privacy_audit_recommender import run as run_recommender

        rec = RecommenderAuditConfig(customers=200, canaries=250, epochs=10) if args.quick else RecommenderAuditConfig()
        report["recommender"] = run_recommender(rec, args.epsilons)
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

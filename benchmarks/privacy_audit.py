"""Membership-inference audit of a propensity model, trained without DP and with DP-SGD (Opacus).

    python benchmarks/privacy_audit.py [--members 1000] [--repeats 3] [--epsilons 1 3]

Prints JSON with, per training regime, the model's utility (test ROC AUC of the repurchase propensity)
and the attack AUCs (loss-threshold and shadow-model) with a bootstrap 95 % interval, averaged over
``--repeats`` random member/non-member draws. The goal: attack AUC <= 0.55 at epsilon <= 3, while the
non-private model shows measurably higher leakage (so the audit demonstrably detects leakage).

Model: an MLP on CDNOW calibration features (log RFM, spend, monthly purchase counts; label = buys again in the
holdout, DESIGN.md's split), one row per customer (the privacy unit). The attack code in
``fedinsight.privacy.membership`` is generic over any torch model and per-example loss. These average-case attacks
cannot tell epsilon 1 from no DP on this model; ``benchmarks/privacy_audit_one_run.py`` is the audit that can (the
one-run audit with canaries, and LiRA, for the product's propensity MLP and the recommender: docs/privacy.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from importlib.util import find_spec

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.metrics import roc_auc_score
from torch import nn

from fedinsight.data import load_cdnow
from fedinsight.data.federation import CDNOW_CALIBRATION_END, cdnow_repurchase_label
from fedinsight.privacy.membership import audit, per_example_loss

LOSS = nn.CrossEntropyLoss(reduction="none")
DELTA = 1e-5


def cdnow_features() -> tuple[torch.Tensor, torch.Tensor]:
    """Per customer: calibration-period features (standardised) and the holdout repurchase label."""
    tx = load_cdnow()
    cal = tx[tx["timestamp"] <= CDNOW_CALIBRATION_END]
    g = cal.groupby("customer_id")
    first, last = g["timestamp"].min(), g["timestamp"].max()
    days = lambda s: s.dt.total_seconds() / 86_400  # noqa: E731
    feats = pd.DataFrame({
        "frequency": g.size() - 1,
        "recency": days(last - first),
        "age": days(CDNOW_CALIBRATION_END - first),
        "spend": g["amount"].sum(),
        "mean_spend": g["amount"].mean(),
        "quantity": g["quantity"].sum(),
    })
    monthly = cal.assign(m=cal["timestamp"].dt.month).pivot_table(index="customer_id", columns="m",
                                                                 values="amount", aggfunc="size", fill_value=0)
    feats = feats.join(monthly.add_prefix("m"), how="left").fillna(0.0)
    feats = np.log1p(feats.clip(lower=0))
    feats = (feats - feats.mean()) / feats.std().replace(0, 1)
    label = cdnow_repurchase_label(tx).reindex(feats.index).astype(int)
    return torch.tensor(feats.to_numpy(), dtype=torch.float32), torch.tensor(label.to_numpy(), dtype=torch.long)


def _mlp(d: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))


def train_plain(x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int = 200) -> nn.Module:
    """Non-private: Adam until the training customers are fitted closely (the worst case for leakage)."""
    torch.manual_seed(seed)
    model = _mlp(x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            LOSS(model(x[idx]), y[idx]).mean().backward()
            opt.step()
    return model


def train_dp(x: torch.Tensor, y: torch.Tensor, seed: int, epsilon: float, epochs: int = 30) -> nn.Module:
    """DP-SGD with Opacus at (epsilon, 1e-5): per-customer clipping (norm 1), Poisson batches of ~64."""
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    model = _mlp(x.shape[1])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        private, opt, loader = PrivacyEngine(accountant="rdp").make_private_with_epsilon(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5), data_loader=loader,
            target_epsilon=epsilon, target_delta=DELTA, epochs=epochs, max_grad_norm=1.0)
        for _ in range(epochs):
            for xb, yb in loader:
                if len(xb):
                    opt.zero_grad()
                    LOSS(private(xb), yb).mean().backward()
                    opt.step()
    return private._module


def bootstrap_ci(member_scores: np.ndarray, nonmember_scores: np.ndarray, rng: np.random.Generator,
                 rounds: int = 300) -> tuple[float, float]:
    """95 % bootstrap interval of the attack AUC (resampling members and non-members)."""
    aucs = []
    for _ in range(rounds):
        m = rng.choice(member_scores, len(member_scores))
        n = rng.choice(nonmember_scores, len(nonmember_scores))
        aucs.append(roc_auc_score(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n]))
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return float(lo), float(hi)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000, help="training customers (= non-members audited)")
    parser.add_argument("--pool", type=int, default=4_000, help="attacker's own customers for shadow models")
    parser.add_argument("--shadows", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="independent member draws to average over")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    x, y = cdnow_features()
    regimes: list[tuple[str, float | None]] = [("non-private", None)] + [("dp-sgd", e) for e in args.epsilons]
    rows: dict[str, list[dict]] = {f"{name}{'' if e is None else f' eps={e:g}'}": [] for name, e in regimes}
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True))
    with progress:
        bar = progress.add_task("auditing", total=args.repeats * len(regimes))
        for rep in range(args.repeats):
            rng = np.random.default_rng(rep)
            order = torch.from_numpy(rng.permutation(len(x)))
            m, p = args.members, args.pool
            members = (x[order[:m]], y[order[:m]])
            nonmembers = (x[order[m:2 * m]], y[order[m:2 * m]])
            pool = (x[order[2 * m:2 * m + p]], y[order[2 * m:2 * m + p]])
            test = (x[order[2 * m + p:]], y[order[2 * m + p:]])
            for (_name, eps), key in zip(regimes, rows, strict=True):
                progress.update(bar, description=f"repeat {rep + 1}: {key}")
                trainer = (lambda a, b, s: train_plain(a, b, s)) if eps is None else (
                    lambda a, b, s, e=eps: train_dp(a, b, s, e))
                model = trainer(*members, rep)
                with torch.no_grad():
                    test_auc = roc_auc_score(test[1].numpy(), torch.softmax(model(test[0]), 1)[:, 1].numpy())
                results = {r.attack: r for r in audit(model, LOSS, members, nonmembers, train=trainer, pool=pool,
                                                      shadows=args.shadows, seed=rep)}
                ci = bootstrap_ci(-per_example_loss(model, LOSS, *members), -per_example_loss(model, LOSS, *nonmembers),
                                  rng)
                rows[key].append({"test_auc": test_auc, "loss_auc": results["loss-threshold"].auc, "loss_ci": ci,
                                  "loss_adv": results["loss-threshold"].advantage,
                                  "shadow_auc": results["shadow-model"].auc})
                progress.advance(bar)
    summary = []
    for (name, eps), reps in zip(regimes, rows.values(), strict=True):
        summary.append({
            "training": name, "epsilon": eps, "delta": None if eps is None else DELTA,
            "propensity_test_auc": round(float(np.mean([r["test_auc"] for r in reps])), 4),
            "loss_threshold_auc": round(float(np.mean([r["loss_auc"] for r in reps])), 4),
            "loss_threshold_auc_ci95_per_repeat": [[round(a, 4), round(b, 4)] for a, b in (r["loss_ci"] for r in reps)],
            "loss_threshold_advantage": round(float(np.mean([r["loss_adv"] for r in reps])), 4),
            "shadow_model_auc": round(float(np.mean([r["shadow_auc"] for r in reps])), 4),
        })
    plain = summary[0]
    private = [s for s in summary if s["epsilon"] is not None and s["epsilon"] <= 3]
    worst_private = max((max(s["loss_threshold_auc"], s["shadow_model_auc"]) for s in private), default=None)
    report = {
        "model": "stand-in propensity MLP on CDNOW calibration features"
                 + ("" if find_spec("fedinsight.models.propensity") is None else
                    " (fedinsight.models.propensity exists: wire it in here)"),
        "recommender": "not audited (no recommender in this installation)",
        "customers": {"members": args.members, "nonmembers": args.members, "shadow_pool": args.pool,
                      "test": int(len(x) - 2 * args.members - args.pool)},
        "repeats": args.repeats, "shadows": args.shadows,
        "results": summary,
        "worst_attack_auc_at_eps_le_3": worst_private,
        "nonprivate_over_worst_private_auc_ratio": None if not worst_private else round(
            max(plain["loss_threshold_auc"], plain["shadow_model_auc"]) / worst_private, 4),
        "goal_attack_auc_le_0.55_at_eps_le_3": worst_private is not None and worst_private <= 0.55,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Membership-inference audits: can an attacker tell whether a customer was in a model's training data?

Why: differential privacy bounds this risk in theory; an audit measures it on the model actually
trained. A model that memorises its training customers has lower loss on them than on customers it
never saw, and an attacker who thresholds the loss (Yeom et al. 2018) -- or who learns the threshold
from shadow models trained like the target (Shokri et al. 2017) -- tells members from non-members better
than a coin flip. The audit reports the attack's ROC AUC (0.5 = no better than guessing) and its
advantage (max TPR - FPR). (ε, δ)-DP bounds the advantage by (e^ε - 1 + 2δ) / (e^ε + 1) (Humphries et al.
2020) whatever the attack; real attacks usually stay far below that worst case, which is why we measure.

Generic over models: anything that maps a batch of inputs to outputs, plus a per-example loss
``loss_fn(outputs, targets) -> tensor[batch]`` (``reduction="none"``). Nothing here knows about
propensity or recommendation models; ``benchmarks/privacy_audit.py`` plugs them in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TrainFn = Callable[[torch.Tensor, torch.Tensor, int], torch.nn.Module]
"""``train(x, y, seed) -> model``: trains a fresh model the way the target was trained."""


@dataclass(frozen=True)
class AttackResult:
    """How well an attack separates members from non-members."""

    attack: str
    auc: float  # ROC AUC of the attack score; 0.5 = guessing
    advantage: float  # max over thresholds of TPR - FPR
    members: int
    nonmembers: int

    def as_dict(self) -> dict[str, float | int | str]:
        return {"attack": self.attack, "auc": round(self.auc, 4), "advantage": round(self.advantage, 4),
                "members": self.members, "nonmembers": self.nonmembers}


@torch.no_grad()
def per_example_loss(model: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                     batch_size: int = 4_096) -> np.ndarray:
    """The model's loss on each example (evaluation mode, no gradients)."""
    was_training = model.training
    model.eval()
    try:
        parts = [loss_fn(model(x[i:i + batch_size]), y[i:i + batch_size]).reshape(-1)
                 for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts).double().cpu().numpy() if parts else np.zeros(0)


def _result(attack: str, member_scores: np.ndarray, nonmember_scores: np.ndarray) -> AttackResult:
    """Scores are "more likely a member" when higher."""
    labels = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    scores = np.r_[member_scores, nonmember_scores]
    fpr, tpr, _ = roc_curve(labels, scores)
    return AttackResult(attack, float(roc_auc_score(labels, scores)), float(np.max(tpr - fpr)),
                        len(member_scores), len(nonmember_scores))


def loss_threshold_attack(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> AttackResult:
    """Yeom et al.: a lower loss means "member". The AUC covers every threshold at once."""
    return _result("loss-threshold", -np.asarray(member_losses, float), -np.asarray(nonmember_losses, float))


def _attack_features(losses: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    cols = [losses, np.log(losses + 1e-12)]
    if labels is not None:
        cols.append(labels.astype(float))
        cols.append(labels.astype(float) * losses)  # a per-class threshold
    return np.column_stack(cols)


def shadow_model_attack(
    train: TrainFn,
    loss_fn: LossFn,
    pool_x: torch.Tensor,
    pool_y: torch.Tensor,
    target: torch.nn.Module,
    members: tuple[torch.Tensor, torch.Tensor],
    nonmembers: tuple[torch.Tensor, torch.Tensor],
    *,
    shadows: int = 4,
    seed: int = 0,
) -> AttackResult:
    """Shokri et al.: train ``shadows`` models like the target on random halves of an attacker-owned
    ``pool`` (disjoint from the target's data), learn member vs non-member from their losses (and the
    label, for a per-class threshold), then score the target's members and non-members.
    """
    rng = np.random.default_rng(seed)
    scalar_labels = pool_y.ndim == 1
    feats, labels = [], []
    n = len(pool_x)
    for s in range(shadows):
        order = rng.permutation(n)
        inside, outside = order[: n // 2], order[n // 2:]
        model = train(pool_x[inside], pool_y[inside], seed * 1_000 + s)
        for idx, is_member in ((inside, 1), (outside, 0)):
            losses = per_example_loss(model, loss_fn, pool_x[idx], pool_y[idx])
            ys = pool_y[idx].cpu().numpy() if scalar_labels else None
            feats.append(_attack_features(losses, ys))
            labels.append(np.full(len(idx), is_member))
    attack = LogisticRegression(max_iter=1_000).fit(np.vstack(feats), np.concatenate(labels))

    def score(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        losses = per_example_loss(target, loss_fn, x, y)
        return attack.predict_proba(_attack_features(losses, y.cpu().numpy() if scalar_labels else None))[:, 1]

    return _result("shadow-model", score(*members), score(*nonmembers))


def audit(
    target: torch.nn.Module,
    loss_fn: LossFn,
    members: tuple[torch.Tensor, torch.Tensor],
    nonmembers: tuple[torch.Tensor, torch.Tensor],
    *,
    train: TrainFn | None = None,
    pool: tuple[torch.Tensor, torch.Tensor] | None = None,
    shadows: int = 4,
    seed: int = 0,
) -> list[AttackResult]:
    """Run the loss-threshold attack, and the shadow-model attack when ``train`` and ``pool`` are given."""
    results = [loss_threshold_attack(per_example_loss(target, loss_fn, *members),
                                     per_example_loss(target, loss_fn, *nonmembers))]
    if train is not None and pool is not None:
        results.append(shadow_model_attack(train, loss_fn, *pool, target, members, nonmembers,
                                           shadows=shadows, seed=seed))
    return results

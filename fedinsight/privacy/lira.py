"""LiRA, the likelihood-ratio membership attack (Carlini et al., "Membership Inference Attacks From First
Principles", IEEE S&P 2022), and its headline figure: true-positive rate at 0.1 % false-positive rate.

Why this figure: an attack's AUC averages over all thresholds and hides the case that matters -- an
attacker who is *sure* about a few customers. TPR at a very low FPR measures exactly that. LiRA trains
shadow models, some with a customer and some without, fits a Gaussian to the customer's logit-scaled
confidence ``log(p / (1 - p))`` in each group, and scores the target model's confidence by the
likelihood ratio (online) or by how far it sits above the OUT Gaussian (offline, no IN shadows needed).

Generic: callers pass a matrix of confidences (one row per trained model, one column per audited
example) and which examples each model trained on. :func:`leave_one_out_scores` uses every model in
turn as the target and the others as shadows, which is how one set of training runs yields enough
non-members to resolve a 0.1 % false-positive rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import roc_curve

from fedinsight.core.errors import ConfigError

_EPS = 1e-7


def logit_confidence(p_true: np.ndarray) -> np.ndarray:
    """LiRA's statistic: ``log(p / (1 - p))`` of the probability given to the true label (near Gaussian)."""
    p = np.clip(np.asarray(p_true, float), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def lira_scores(target: np.ndarray, shadow_conf: np.ndarray, shadow_in: np.ndarray, *, online: bool = True,
                fixed_variance: bool = True) -> np.ndarray:
    """Per example, how much more likely the target's confidence is under "member" (higher = member).

    ``shadow_conf[k, i]`` is shadow k's confidence on example i, ``shadow_in[k, i]`` whether k trained on it.
    ``fixed_variance`` pools one variance over all examples (Carlini et al.'s advice for few shadows).
    An example with no IN (online) or no OUT shadow gets the neutral score 0.
    """
    conf, inside = np.asarray(shadow_conf, float), np.asarray(shadow_in, bool)
    target = np.asarray(target, float)
    if conf.shape != inside.shape or conf.ndim != 2 or conf.shape[1] != len(target):
        raise ConfigError("shadow confidences and inclusion need shape (shadows, examples) matching the target")

    def fit(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        count = mask.sum(0)
        mean = np.where(count > 0, (conf * mask).sum(0) / np.maximum(count, 1), np.nan)
        resid = np.where(mask, conf - mean, 0.0)
        var = (resid**2).sum(0) / np.maximum(count - 1, 1)
        if fixed_variance:
            pooled = (resid**2).sum() / max(int(count.sum()) - int((count > 0).sum()), 1)
            var = np.full_like(var, pooled)
        return mean, np.sqrt(np.maximum(var, 1e-6)), count

    mu_out, sd_out, n_out = fit(~inside)
    if not online:
        score = stats.norm.logcdf(target, mu_out, sd_out)
        return np.where(n_out > 0, score, 0.0)
    mu_in, sd_in, n_in = fit(inside)
    score = stats.norm.logpdf(target, mu_in, sd_in) - stats.norm.logpdf(target, mu_out, sd_out)
    return np.where((n_in > 0) & (n_out > 0), score, 0.0)


def leave_one_out_scores(conf: np.ndarray, inside: np.ndarray, *, online: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Each model in turn is the target, the rest its shadows; returns flat (scores, membership labels)."""
    conf, inside = np.asarray(conf, float), np.asarray(inside, bool)
    if conf.shape[0] < 2:
        raise ConfigError("LiRA needs at least two trained models (a target and a shadow)")
    scores, labels = [], []
    for t in range(conf.shape[0]):
        rest = np.arange(conf.shape[0]) != t
        scores.append(lira_scores(conf[t], conf[rest], inside[rest], online=online))
        labels.append(inside[t])
    return np.concatenate(scores), np.concatenate(labels)


@dataclass(frozen=True)
class LowFprResult:
    """TPR at a false-positive rate, with how many non-members the rate was measured on."""

    fpr: float
    tpr: float
    members: int
    nonmembers: int

    def as_dict(self) -> dict[str, float | int]:
        return {"fpr": self.fpr, "tpr": round(self.tpr, 4), "members": self.members, "nonmembers": self.nonmembers,
                "false_positives_allowed": int(np.floor(self.fpr * self.nonmembers))}


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float = 1e-3) -> LowFprResult:
    """The highest TPR over thresholds whose FPR is at most ``fpr`` (with few non-members, FPR 0)."""
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        raise ConfigError("need both members and non-members to measure TPR at a false-positive rate")
    f, t, _ = roc_curve(labels, np.asarray(scores, float))
    return LowFprResult(fpr, float(t[f <= fpr].max()), int(labels.sum()), int((~labels).sum()))

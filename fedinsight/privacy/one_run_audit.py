"""Privacy auditing with one training run (Steinke, Nasr, Jagielski, NeurIPS 2023).

Why: a membership attack's AUC says "the attack did not work", not "the model is private"; the one-run
audit turns an attack into a *statistical lower bound on epsilon*, the figure that the claimed epsilon
must stay above. ``m`` canaries (fake customers) are each put into the training data with probability
1/2, independently, from OS entropy (never a seed anyone else knows). After the one training run the
auditor scores every canary ("looks trained on"), guesses the top ``k+`` as IN and the bottom ``k-`` as
OUT and abstains on the rest. If training is (epsilon, delta)-DP, the number of correct guesses out of
``r = k+ + k-`` is stochastically dominated by Binomial(r, e^eps / (1 + e^eps)) -- up to a delta term --
(their Theorem 3.1 / Proposition 5.8), so observing ``v`` correct guesses rejects every epsilon whose
p-value is below ``beta``; the largest rejected epsilon is the lower bound at confidence ``1 - beta``.

:func:`p_value` and :func:`epsilon_lower_bound` follow the paper's own Python code (its Algorithm for
the p-value with the delta correction, then a bisection over epsilon). Nothing here knows about models.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np
from scipy import stats

from fedinsight.core.errors import ConfigError


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P-value of "training is (epsilon, delta)-DP" after ``v`` correct guesses out of ``r`` on ``m`` canaries.

    ``beta`` is the Binomial(r, q) tail at ``v`` with ``q = e^eps / (1 + e^eps)`` (the accuracy of
    epsilon-randomized response); ``alpha`` is the paper's delta correction, the largest average
    Binomial mass just below ``v``, weighted by ``2 m delta``.
    """
    if not 0 <= v <= r <= m:
        raise ConfigError(f"need 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ConfigError(f"need epsilon >= 0 and delta in [0, 1] (got {epsilon}, {delta})")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    beta = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    # the paper's loop over i = 1..v, vectorised: mass_i = P[v > Binomial(r, q) >= v - i], alpha = max mass_i / i
    i = np.arange(1, v + 1)
    mass = np.cumsum(stats.binom.pmf(v - i, r, q))
    alpha = float(np.max(mass / i)) if v else 0.0
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, beta: float = 0.05, *, steps: int = 30) -> float:
    """The largest epsilon rejected at level ``beta`` (0 when even epsilon = 0 is not rejected).

    Bisection as in the paper: ``lo`` keeps p-value < beta, ``hi`` keeps p-value >= beta.
    """
    if not 0 < beta < 1:
        raise ConfigError(f"confidence level beta must be in (0, 1) (got {beta})")
    lo, hi = 0.0, 1.0
    if p_value(m, r, v, lo, delta) >= beta:
        return 0.0
    while p_value(m, r, v, hi, delta) < beta:
        lo, hi = hi, hi + 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta) < beta:
            lo = mid
        else:
            hi = mid
    return lo


def draw_inclusion(m: int) -> np.ndarray:
    """Which of ``m`` canaries go into training: independent fair coins from OS entropy."""
    return np.random.default_rng(secrets.randbits(128)).random(m) < 0.5


@dataclass(frozen=True)
class OneRunAudit:
    """The audit's outcome: guesses made and right, and the bound at confidence ``1 - beta``."""

    canaries: int
    guesses: int
    correct: int
    k_in: int
    k_out: int
    epsilon_lower_bound: float
    beta: float
    delta: float

    def as_dict(self) -> dict[str, float | int]:
        return {"canaries": self.canaries, "guesses": self.guesses, "correct": self.correct,
                "k_in": self.k_in, "k_out": self.k_out, "epsilon_lower_bound": round(self.epsilon_lower_bound, 4),
                "confidence": 1 - self.beta, "delta": self.delta}


def audit_guesses(scores: np.ndarray, included: np.ndarray, k_in: int, k_out: int, *, delta: float,
                  beta: float = 0.05) -> OneRunAudit:
    """Guess IN for the ``k_in`` highest scores and OUT for the ``k_out`` lowest; count and bound.

    Ties are broken by position (the caller's canary order is random, so this adds no information).
    """
    scores, included = np.asarray(scores, float), np.asarray(included, bool)
    m = len(scores)
    if len(included) != m or k_in < 0 or k_out < 0 or k_in + k_out > m:
        raise ConfigError(f"need one inclusion flag per score and k_in + k_out <= {m} (got {k_in} + {k_out})")
    order = np.argsort(-scores, kind="stable")
    correct = int(included[order[:k_in]].sum()) + int((~included[order[m - k_out:]]).sum() if k_out else 0)
    r = k_in + k_out
    return OneRunAudit(m, r, correct, k_in, k_out, epsilon_lower_bound(m, r, correct, delta, beta), beta, delta)


def best_audit(scores: np.ndarray, included: np.ndarray, *, delta: float, beta: float = 0.05,
               fractions: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.25, 0.4)) -> OneRunAudit:
    """Try a small grid of guess counts (``k+`` and ``k-`` each a fraction of the canaries) and keep the
    highest bound, as the paper reports its best abstention setting.

    Keeping the best of several tries is a multiple comparison, so each try is tested at ``beta`` divided
    by the number of tries (Bonferroni): the reported figure stays a valid lower bound at ``1 - beta``.
    """
    m = len(scores)
    counts = sorted({round(f * m) for f in fractions})
    pairs = [(a, b) for a in counts for b in counts if 0 < a + b <= m]
    if not pairs:
        raise ConfigError(f"no guess count fits {m} canaries")
    audits = [audit_guesses(scores, included, a, b, delta=delta, beta=beta / len(pairs)) for a, b in pairs]
    best = max(audits, key=lambda a: a.epsilon_lower_bound)
    return OneRunAudit(best.canaries, best.guesses, best.correct, best.k_in, best.k_out, best.epsilon_lower_bound,
                       beta, delta)

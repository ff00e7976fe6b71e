"""What a partner may put in its replies to a propensity job: the one list both sides read.

The ClientApp builds its replies from these keys and the ServerApp inspects every reply against them
(:mod:`fedinsight.federation.guard`): model weights with the global model's keys and shapes, scalar
metrics, and fixed-length count vectors whose length depends only on the protocol -- never on how many
customers a partner has. Anything else in a reply (an extra record, an unknown key, a list of the
wrong length, a string) is a protocol violation and the reply is discarded.

Plain data, no Flower imports: :func:`releases` turns these into the task's release manifest.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dp_accounting import dp_event

from fedinsight.federation.manifest import PUBLIC, Release
from fedinsight.models.federated_stats import SPEND_BINS, stats_length, stats_sensitivity
from fedinsight.models.metrics import EvalSummary
from fedinsight.privacy.ledger import dpsgd_event

ACTION = "propensity"
"""Flower action: message types are ``query.propensity``, ``train.propensity``, ``evaluate.propensity``."""

PHASES: tuple[str, ...] = ("hello", "stats", "ltv-hist")
"""Query phases, in the order the coordinator runs them (training and evaluation come between)."""

ARRAYS = "arrays"
METRICS = "metrics"
CONFIG = "config"
PARTNER = "partner"

REFUSED_BUDGET = 1
REFUSED_NON_PRIVATE = 2

MIN_EVAL_CUSTOMERS = 50
"""A partner does not report evaluation counts on fewer held-out customers than this (the design's
minimum group size): with exact counts on a handful of customers, a coordinator choosing a tiny
``test-share`` could read single customers' labels. Partners can raise it (``min-eval-customers``)."""

PRIVACY_METRICS: dict[str, int | None] = {
    "refused": None,  # 0 = done, 1 = would exceed the partner's budget, 2 = non-private run not allowed
    "epsilon": None,  # the partner's cumulative epsilon (all releases its accountant has seen)
    "epsilon-job": None,  # epsilon of this job's releases only
    "epsilon-would-be": None,  # on refusal: what the release would have brought it to
    "epsilon-budget": None,  # the partner's own cap
}
"""Metric key -> None for a scalar, or the exact length of a list."""

EVALUATE_SCALARS: tuple[str, ...] = ("auc", "log_loss", "ece", "lift_top_decile")
"""Per-partner metrics (for the sample-weighted mean); pooled metrics come from the summary counts."""


def reply_metrics(kind: str, n_features: int) -> dict[str, int | None]:
    """Allowed metric keys of a ``kind`` reply (a query phase, ``train`` or ``evaluate``)."""
    tables: dict[str, dict[str, int | None]] = {
        "hello": {},
        "stats": {**PRIVACY_METRICS, "stats": stats_length(n_features)},
        "ltv-hist": {**PRIVACY_METRICS, "ltv-hist": SPEND_BINS},
        "train": {**PRIVACY_METRICS, "num-examples": None, "train-seconds": None, "steps": None},
        "evaluate": {"num-examples": None, "suppressed": None, **{k: None for k in EVALUATE_SCALARS},
                     **{k: None for k in EvalSummary.SCALARS}, **EvalSummary.LIST_LENGTHS},
    }
    return tables[kind]



def releases(options: Any, plan: Any, shapes: dict[str, tuple[int, ...]], n_features: int) -> list[Release]:
    """Every value a partner sends in a propensity job (the task's release manifest)."""
    private = plan is not None
    nonprivate = "non-private run: only partners that allow it (require-dp=false) take part"
    status = Release("*", METRICS, dict.fromkeys(PRIVACY_METRICS), PUBLIC,
                     what="the partner's own accounting: refused?, its epsilon so far, its cap",
                     reason="functions of the job's public noise parameters and the partner's own cap")

    def noisy(reply: str, key: str, length: int, sensitivity: float, what: str) -> Release:
        if not private:
            return Release(reply, METRICS, {key: (length,)}, PUBLIC, what=what, reason=nonprivate)
        return Release(reply, METRICS, {key: (length,)}, "gaussian", what=what,
                       sensitivity=f"L2 {sensitivity:.4g} per customer (unit-clipped features)",
                       event=dp_event.GaussianDpEvent(plan.gaussian_noise_multiplier))

    weights = (Release("train", ARRAYS, {k: tuple(v) for k, v in shapes.items()}, "dp-sgd", kind="arrays",
                       what="the model's weights after local DP-SGD steps",
                       sensitivity=f"per-customer gradient clipped to L2 {plan.max_grad_norm:g}, noise multiplier "
                                   f"{plan.noise_multiplier:.4g}, Poisson sample rate {plan.sample_rate:g}",
                       event=dpsgd_event(plan.noise_multiplier, plan.sample_rate, plan.steps_per_round),
                       count=options.rounds)
               if private else Release("train", ARRAYS, {k: tuple(v) for k, v in shapes.items()}, PUBLIC,
                                       kind="arrays", what="the model's weights after local SGD", reason=nonprivate))
    train_info = Release("train", METRICS, dict.fromkeys(("num-examples", "train-seconds", "steps")), PUBLIC,
                         what="the partner's weight in FedAvg, its training time (0.1 s), its step count",
                         reason="the weight is the noisy count of the stats release (post-processing); steps are "
                                "the job's; the wall time grows with the number of customers, which DP-SGD's "
                                "sample-rate convention treats as public")
    evaluation = Release("evaluate", METRICS, {**{k: None for k in ("num-examples", "suppressed", *EVALUATE_SCALARS,
                                                                      *EvalSummary.SCALARS)},
                                               **{k: (n,) for k, n in EvalSummary.LIST_LENGTHS.items()}}, PUBLIC,
                         what="evaluation counts on the partner's held-out customers (fixed-size histograms, sums)",
                         reason="held-out customers never take part in training; exact counts, not yet noised "
                                "(docs/privacy.md says so); not reported below the partner's own minimum",
                         count=options.rounds + 1)
    return [
        noisy("stats", "stats", stats_length(n_features), stats_sensitivity(n_features),
              "noisy feature statistics for the shared scaler (count, sums, squares)"),
        replace(status, reply="stats"),
        weights, train_info, replace(status, reply="train"),
        evaluation,
        noisy("ltv-hist", "ltv-hist", SPEND_BINS, 1.0, "noisy histogram of predicted LTV for the tier thresholds"),
        replace(status, reply="ltv-hist"),
    ]

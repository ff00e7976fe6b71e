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
from fedinsight.privacy.ledger import dpsgd_event
from fedinsight.tasks.propensity import evaluation

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
"""A partner does not release evaluation on fewer held-out customers than this (the design's minimum group
size), even though the release is DP: on a handful of customers the noise would drown it anyway. Neither a job
(``min-eval-customers``) nor the partner's own setting can lower it; each can raise it, and the partner takes
the largest of the three."""

PRIVACY_METRICS: dict[str, int | None] = {
    "refused": None,  # 0 = done, 1 = would exceed the partner's budget, 2 = non-private run not allowed
    "epsilon": None,  # the partner's cumulative epsilon (all releases its accountant has seen)
    "epsilon-job": None,  # epsilon of this job's releases only
    "epsilon-would-be": None,  # on refusal: what the release would have brought it to
    "epsilon-budget": None,  # the partner's own cap
}
"""Metric key -> None for a scalar, or the exact length of a list."""



def reply_metrics(kind: str, n_features: int) -> dict[str, int | None]:
    """Allowed metric keys of a ``kind`` reply (a query phase, ``train`` or ``evaluate``)."""
    tables: dict[str, dict[str, int | None]] = {
        "hello": {},
        "stats": {**PRIVACY_METRICS, "stats": stats_length(n_features)},
        "ltv-hist": {**PRIVACY_METRICS, "ltv-hist": SPEND_BINS},
        "train": {**PRIVACY_METRICS, "num-examples": None, "train-seconds": None, "steps": None},
        "evaluate": {**PRIVACY_METRICS, "suppressed": None, **evaluation.LENGTHS},
    }
    return tables[kind]



def releases(options: Any, plan: Any, shapes: dict[str, tuple[int, ...]], n_features: int,
             training: list[Release] | None = None, secure: dict[str, Release] | None = None) -> list[Release]:
    """Every value a partner sends in a propensity job (the task's release manifest). ``training``: the training
    rounds' releases when they do not travel as ``train`` replies (distributed noise: the SecAgg+ protocol's);
    ``secure``: likewise the statistics, LTV-histogram and evaluation releases (``stats``, ``ltv-hist``,
    ``evaluate``: masked SecAgg+ vectors instead of their own replies)."""
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
    train_info = Release("train", METRICS, dict.fromkeys(("num-examples", "steps") if private else
                                                         ("num-examples", "train-seconds", "steps")), PUBLIC,
                         what="the partner's weight in FedAvg and its step count (a non-private job: also its "
                              "training time, rounded up to 1 s)",
                         reason="the weight is the noisy count of the stats release (post-processing), or 1 when "
                                "the partner holds no such count (never its exact count); steps are the job's; a DP "
                                "job sends no timing (it grows with the partner's data, unnoised)"
                                + ("" if private else f"; {nonprivate}"))
    if secure is not None:  # distributed noise: every release is a masked SecAgg+ vector, no reply of its own
        return [*(training or []), *secure.values()]
    evaluation_releases = _evaluation(options, private, nonprivate, status)
    return [
        noisy("stats", "stats", stats_length(n_features), stats_sensitivity(n_features),
              "noisy feature statistics for the shared scaler (count, sums, squares)"),
        replace(status, reply="stats"),
        *([weights, train_info, replace(status, reply="train")] if training is None else training),
        *evaluation_releases,
        noisy("ltv-hist", "ltv-hist", SPEND_BINS, 1.0, "noisy histogram of predicted LTV for the tier thresholds"),
        replace(status, reply="ltv-hist"),
    ]


def _evaluation(options: Any, private: bool, nonprivate: str, status: Release) -> list[Release]:
    """The evaluation replies: one DP release per evaluation (none when the job does not evaluate)."""
    count = options.eval_releases
    if not count:
        return []
    fields = {k: None if n is None else (n,) for k, n in evaluation.LENGTHS.items()}
    fields["suppressed"] = None
    what = ("noisy evaluation on the partner's held-out customers: logit histograms by label "
            f"({evaluation.DP_LOGIT_BINS} bins), clipped log-loss and LTV-error sums, the LTV tier matrix; "
            + ("after every round and at the end" if options.eval_every_round else "once, at the end")
            + "; or only suppressed = 1 when the release's noisy held-out count is below the partner's minimum")
    if private:
        m = options.eval_noise_multiplier()
        dp = Release("evaluate", METRICS, fields, "gaussian", what=what, count=count,
                     sensitivity=f"L2 {evaluation.SENSITIVITY:g} per customer after scaling (1 for its histogram "
                                 f"bin; {evaluation.SECONDARY_WEIGHT:g} each for its count, its label, its log loss "
                                 f"clipped to {options.eval_log_loss_cap:g}, its abs(spend - LTV) clipped to "
                                 f"{options.eval_error_cap:g}, its tier cell); noise multiplier {m:.4g}; the "
                                 "suppressed flag is post-processing of the same release (its noisy count n), "
                                 "charged with it",
                     event=evaluation.eval_event(m))
    else:
        dp = Release("evaluate", METRICS, fields, PUBLIC, what=what, reason=nonprivate, count=count)
    return [dp, replace(status, reply="evaluate")]

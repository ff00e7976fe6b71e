"""What a partner may put in its replies to a propensity job: the one list both sides read.

The ClientApp builds its replies from these keys and the ServerApp inspects every reply against them
(:mod:`fedinsight.federation.guard`): model weights with the global model's keys and shapes, scalar
metrics, and fixed-length count vectors whose length depends only on the protocol -- never on how many
customers a partner has. Anything else in a reply (an extra record, an unknown key, a list of the
wrong length, a string) is a protocol violation and the reply is discarded.

Plain data, no Flower imports: the server turns these into a reply spec.
"""

from __future__ import annotations

from fedinsight.models.federated_stats import SPEND_BINS, stats_length
from fedinsight.models.metrics import EvalSummary

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

HELLO_CONFIG: dict[str, str] = {"partner-id": r"[A-Za-z0-9_.:-]{1,128}"}
"""The hello reply's only record is a ConfigRecord with the partner's name (no customer data)."""

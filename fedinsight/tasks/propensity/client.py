"""The partner side of a propensity/LTV job.

Message types (the job's phases, in order; ``hello`` is the framework's):

- ``query.propensity`` phase ``stats``: the noisy feature statistics for the shared scaler;
- ``train.propensity``: DP-SGD on the training customers, reply with the new weights;
- ``evaluate.propensity``: one DP release (noisy histograms and clipped sums) on the held-out customers;
- ``query.propensity`` phase ``ltv-hist``: a noisy histogram of predicted LTV for the tier thresholds.

Every release passes the partner's budget gate first (:class:`~fedinsight.federation.budget.BudgetGate`):
its own lifetime cap and the job's epsilon. A release that would pass either is refused, and the reply
says so (``refused``, ``epsilon``, ``epsilon-would-be``, ``epsilon-budget``) instead of carrying anything
else; the other partners finish the job. DP noise and Poisson sampling use fresh OS entropy, never a seed
the coordinator could know.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord

import fedinsight.tasks.propensity.protocol as proto
from fedinsight.core.errors import ConfigError
from fedinsight.federation.budget import GateStatus
from fedinsight.federation.messages import config_of, reply
from fedinsight.federation.task import Partner, phase_of
from fedinsight.models.federated_stats import partner_stats, spend_histogram, stats_sensitivity
from fedinsight.models.metrics import assign_tiers
from fedinsight.models.propensity import (
    PropensityNet,
    SharedScaler,
    TargetScaler,
    get_weights,
    predict,
    propensity_loss,
    set_weights,
    tensors,
)
from fedinsight.privacy.dpsgd import DpsgdPlan, train_dpsgd, train_sgd
from fedinsight.privacy.holdout import DEFAULT_TEST_SHARE, holdout_key, holdout_mask, partner_share
from fedinsight.privacy.ledger import dpsgd_event
from fedinsight.privacy.mechanisms import gaussian
from fedinsight.tasks.propensity import evaluation
from fedinsight.tasks.propensity.customer_scan import customer_scan, table_from_scan
from fedinsight.tasks.propensity.features import (
    FEATURES,
    FeatureCaps,
    LabelWindow,
    spend_from_unit,
    unit_features,
    unit_spend,
)
from fedinsight.tasks.propensity.options import HOLDOUT_KEY, PropensityOptions

STATE_COUNT = "propensity.noisy-count"


# --- the partner's data, prepared once per job ------------------------------------------------------

@dataclass(frozen=True)
class PartnerSplit:
    """Unit-scale features and labels of this partner's training and held-out customers."""

    unit_train: np.ndarray
    buys_train: np.ndarray
    spend_train: np.ndarray
    unit_test: np.ndarray
    buys_test: np.ndarray
    spend_test: np.ndarray


_SPLITS: OrderedDict[tuple[Any, ...], PartnerSplit] = OrderedDict()
_MAX_SPLITS = 1024  # > the most simulated partners (1,000): one Ray actor serves them all, round after round


def prepare(partner: Partner, options: PropensityOptions, job_id: str) -> PartnerSplit:
    """This partner's split for the job (cached per job: a Ray actor or SuperNode serves every round of it;
    the next job reads the data view again, so consent changes and erasures take effect). The held-out
    customers follow the partner's own secret key and share (:mod:`fedinsight.privacy.holdout`), whatever the
    job asks."""
    window, caps = options.window, options.caps
    share = partner_share(partner.setting("test-share", DEFAULT_TEST_SHARE))  # the partner's, not the job's
    key = (partner.partner_id, job_id, window, caps, share)
    if key not in _SPLITS:
        table = partner_table(partner, window)
        test = holdout_mask(table.index, share, holdout_key(partner.vault, HOLDOUT_KEY))
        unit = unit_features(table, window, caps)
        buys, spend = table["buys_again"].to_numpy(float), table["spend"].to_numpy(float)
        _SPLITS[key] = PartnerSplit(unit[~test], buys[~test], spend[~test], unit[test], buys[test], spend[test])
        while len(_SPLITS) > _MAX_SPLITS:
            _SPLITS.popitem(last=False)
    return _SPLITS[key]


def partner_table(partner: Partner, window: LabelWindow) -> pd.DataFrame:
    """The partner's per-customer features and labels, computed by its engine (its transactions are never loaded
    whole into pandas; :mod:`.customer_scan`). A partner without a transactions table is refused, as before."""
    table = table_from_scan(partner.scan(customer_scan(window)), window)
    if table.empty and "transactions" not in partner.columns():  # the engine reads an absent table as empty
        raise ConfigError(f"partner {partner.partner_id} has no transactions table; propensity needs purchases")
    return table


# --- the partner's budget -----------------------------------------------------------------------------

def _status_metrics(status: GateStatus, options: PropensityOptions, refused: int = 0, would_be: float = 0.0,
                    limit: float | None = None) -> dict[str, float]:
    """The gate's answer as reply metrics; ``epsilon-budget`` is the limit that binds (the partner's own cap, or
    the job's epsilon), and ``epsilon`` the partner's epsilon at that limit."""
    cap = min(status.cap, options.epsilon) if limit is None else limit
    epsilon = status.epsilon_lifetime if cap == status.cap else status.epsilon_job
    return {"refused": refused, "epsilon": epsilon, "epsilon-job": status.epsilon_job,
            "epsilon-would-be": would_be, "epsilon-budget": cap}


def _gate(partner: Partner, options: PropensityOptions, job_id: str, events: list[Any], kind: str,
          description: str) -> tuple[dict[str, float], bool]:
    """Spend ``events`` at the partner's gate: (status metrics, released?). A refusal is a reply, not an error."""
    gate = partner.gate
    if not events:  # a non-private job: only partners that allow it take part
        if gate.require_dp:
            status = gate.status(job_id, options.delta)
            return _status_metrics(status, options, proto.REFUSED_NON_PRIVATE), False
        return _status_metrics(gate.status(job_id, options.delta), options), True
    binding = gate.binding(job_id, events, job_epsilon=options.epsilon, job_delta=options.delta)
    if binding is not None:
        status = gate.status(job_id, options.delta)
        return _status_metrics(status, options, proto.REFUSED_BUDGET, binding.would_be, binding.epsilon), False
    status = gate.spend(job_id, events, job_epsilon=options.epsilon, job_delta=options.delta, kind=kind,
                        description=description)
    return _status_metrics(status, options), True


# --- message helpers ------------------------------------------------------------------------------

def _options(msg: Message) -> tuple[PropensityOptions, dict[str, Any]]:
    cfg = config_of(msg)
    return PropensityOptions.from_run_config(cfg), cfg


def _model(msg: Message, options: PropensityOptions) -> PropensityNet:
    arrays: ArrayRecord = msg.content[proto.ARRAYS]  # type: ignore[assignment]
    weights = {k: v.numpy() for k, v in arrays.items()}
    return set_weights(PropensityNet(len(FEATURES), options.model), weights)


def _scalers(cfg: dict[str, Any]) -> tuple[SharedScaler, TargetScaler]:
    return (SharedScaler(tuple(cfg["scaler-mean"]), tuple(cfg["scaler-std"])),
            TargetScaler(float(cfg["target-mean"]), float(cfg["target-std"])))


def _predict_ltv(model: PropensityNet, unit: np.ndarray, cfg: dict[str, Any],
                 caps: FeatureCaps) -> tuple[np.ndarray, np.ndarray]:
    scaler, target = _scalers(cfg)
    p, z_hat = predict(model, scaler.transform(unit))
    spend_if_buy = spend_from_unit(np.clip(target.inverse(z_hat), 0.0, 1.0), caps)
    return p, p * spend_if_buy


def _plan(options: PropensityOptions, cfg: dict[str, Any]) -> DpsgdPlan | None:
    return None if options.non_private else DpsgdPlan.from_dict(cfg)


# --- handlers -------------------------------------------------------------------------------------

def query(msg: Message, partner: Partner) -> Message:
    """Dispatch on the job phase named in the message's config."""
    phase = phase_of(msg)
    if phase == "stats":
        return _stats(msg, partner)
    if phase == "ltv-hist":
        return _ltv_hist(msg, partner)
    raise ConfigError(f"unknown propensity phase '{phase}' (expected one of {', '.join(proto.PHASES)})")


def _gaussian_release(msg: Message, partner: Partner, values: np.ndarray, sensitivity: float, key: str) -> Message:
    """Release ``values`` with the plan's Gaussian noise, if the partner's gate allows it."""
    options, cfg = _options(msg)
    plan = _plan(options, cfg)
    events = [] if plan is None else [plan.gaussian_event()]
    status, released = _gate(partner, options, str(cfg["job-id"]), events, "stats", f"propensity {key}")
    if not released:
        return reply(msg, **{proto.METRICS: MetricRecord(status)})
    noisy = np.asarray(values, float) if plan is None else \
        gaussian(values, sensitivity, plan.gaussian_noise_multiplier).values
    return reply(msg, **{proto.METRICS: MetricRecord({key: [float(v) for v in noisy], **status})})


def exact_vector(release: str, split: PartnerSplit, options: PropensityOptions, cfg: dict[str, Any],
                 model: PropensityNet | None) -> np.ndarray:
    """The exact vector of one release before any noise (never sent as such): local mode noises it on the partner,
    distributed mode adds a discrete-Gaussian share and SecAgg+ masks it. ``evaluate`` is the scaled flat vector
    (:func:`~.evaluation.scaled_vector`); ``ltv-hist`` and ``evaluate`` need the released ``model``."""
    caps = options.caps
    if release == "stats":
        return partner_stats(split.unit_train, split.buys_train, unit_spend(split.spend_train, caps))
    assert model is not None
    if release == "ltv-hist":
        _, ltv = _predict_ltv(model, split.unit_train, cfg, caps)
        return spend_histogram(unit_spend(ltv, caps))
    if release == "evaluate":
        return evaluation.scaled_vector(_exact_evaluation(split, options, cfg, model), options.eval_caps)
    raise ConfigError(f"unknown propensity release '{release}'")


def _exact_evaluation(split: PartnerSplit, options: PropensityOptions, cfg: dict[str, Any],
                      model: PropensityNet) -> dict[str, np.ndarray | float]:
    p, ltv = _predict_ltv(model, split.unit_test, cfg, options.caps)
    tiers: dict[str, np.ndarray] = {}
    if "tier-true" in cfg and "tier-pred" in cfg:
        tiers = {"true_tiers": assign_tiers(split.spend_test, tuple(cfg["tier-true"])),  # type: ignore[arg-type]
                 "predicted_tiers": assign_tiers(ltv, tuple(cfg["tier-pred"]))}  # type: ignore[arg-type]
    return evaluation.exact_release(split.buys_test, p, caps=options.eval_caps, spend=split.spend_test, ltv=ltv,
                                    **tiers)


def _local_only(options: PropensityOptions, what: str) -> None:
    """A distributed-noise job releases statistics, histograms and evaluation only as SecAgg+ sums."""
    if options.distributed:
        raise ConfigError(f"this job releases its {what} under SecAgg+ (--noise-model distributed-secagg): a local "
                          "release would send an unmasked vector; nothing released")


def _stats(msg: Message, partner: Partner) -> Message:
    options, cfg = _options(msg)
    _local_only(options, "feature statistics")
    split = prepare(partner, options, str(cfg["job-id"]))
    vector = exact_vector("stats", split, options, cfg, None)
    out = _gaussian_release(msg, partner, vector, stats_sensitivity(len(FEATURES)), "stats")
    metrics: MetricRecord = out.content[proto.METRICS]  # type: ignore[assignment]
    if int(metrics["refused"]) == 0:  # the noisy count weights this partner in FedAvg (post-processing)
        partner.context.state[STATE_COUNT] = ConfigRecord({"n": max(1.0, float(metrics["stats"][0]))})  # type: ignore[index]
    return out


def _ltv_hist(msg: Message, partner: Partner) -> Message:
    options, cfg = _options(msg)
    _local_only(options, "LTV histogram")
    split = prepare(partner, options, str(cfg["job-id"]))
    hist = exact_vector("ltv-hist", split, options, cfg, _model(msg, options))
    return _gaussian_release(msg, partner, hist, 1.0, "ltv-hist")


def train(msg: Message, partner: Partner) -> Message:
    """Local DP-SGD steps from the global weights; the reply carries the new weights and privacy metrics."""
    options, cfg = _options(msg)
    if options.distributed:
        raise ConfigError("this job trains under SecAgg+ (--noise-model distributed-secagg): a local training round "
                          "would send an unmasked update; nothing released")
    plan = _plan(options, cfg)
    steps = int(cfg["steps-per-round"])
    events = [] if plan is None else [dpsgd_event(plan.noise_multiplier, plan.sample_rate, steps)]
    split = prepare(partner, options, str(cfg["job-id"]))
    status, released = _gate(partner, options, str(cfg["job-id"]), events, "training",
                             f"propensity DP-SGD round {cfg.get('server-round', '?')}: {steps} steps")
    if not released:
        return reply(msg, **{proto.METRICS: MetricRecord(status)})
    scaler, target = _scalers(cfg)
    data = tensors(scaler.transform(split.unit_train), split.buys_train,
                   target.transform(unit_spend(split.spend_train, options.caps)))
    model = _model(msg, options)
    lr = float(cfg["lr"])
    if plan is None:
        trained, stats = train_sgd(model, data, propensity_loss, sample_rate=options.sample_rate, steps=steps,
                                   lr=lr, seed=int.from_bytes(os.urandom(7), "big"),
                                   max_grad_norm=options.max_grad_norm)
    else:
        trained, stats = train_dpsgd(model, data, propensity_loss, noise_multiplier=plan.noise_multiplier,
                                     sample_rate=plan.sample_rate, steps=steps, max_grad_norm=plan.max_grad_norm,
                                     lr=lr)
    state = partner.context.state
    # the FedAvg weight: the noisy count released with the statistics (post-processing), else 1 -- never the
    # exact count; a DP job sends no timing (it grows with the partner's data, unnoised), a non-private one
    # its training time coarsened to whole seconds
    count = state[STATE_COUNT]["n"] if STATE_COUNT in state else 1.0
    arrays = ArrayRecord({k: Array(np.asarray(v)) for k, v in get_weights(trained).items()})
    timing = {} if plan is not None else {"train-seconds": float(math.ceil(stats.seconds))}
    metrics = MetricRecord({"num-examples": float(count), **timing, "steps": stats.steps, **status})
    return reply(msg, **{proto.ARRAYS: arrays, proto.METRICS: metrics})


def evaluate(msg: Message, partner: Partner) -> Message:
    """Evaluate the global model on the held-out customers; reply with one DP release (:mod:`.evaluation`).

    The release passes the partner's budget gate like any other (charged as ``evaluation``). When its *noisy*
    held-out count is below the largest of 50, the partner's own ``min-eval-customers`` and the job's, the partner
    withholds it and reports only ``suppressed = 1`` with its budget status: the flag is post-processing of the
    charged release, so it carries no exact count (issue 14). A job that said ``evaluate = false`` gets no
    evaluation, whatever it sends; a distributed-noise job evaluates only under SecAgg+.
    """
    options, cfg = _options(msg)
    if not options.evaluate:
        raise ConfigError("this job was planned without evaluation (evaluate = false): nothing to release")
    _local_only(options, "evaluation")
    split = prepare(partner, options, str(cfg["job-id"]))
    minimum = max(proto.MIN_EVAL_CUSTOMERS, int(partner.setting("min-eval-customers", 0)), options.min_eval_customers)
    plan = _plan(options, cfg)
    if plan is not None and "eval-noise-multiplier" not in cfg:
        raise ConfigError("the job's plan carries no evaluation noise (an older coordinator?): nothing released")
    multiplier = None if plan is None else float(cfg["eval-noise-multiplier"])
    model = _model(msg, options)  # read before the spend: a malformed message costs the partner nothing
    events = [] if multiplier is None else [evaluation.eval_event(multiplier)]
    when = f"round {cfg['server-round']}" if "server-round" in cfg else "final"
    status, released = _gate(partner, options, str(cfg["job-id"]), events, "evaluation",
                             f"propensity evaluation ({when}): Gaussian, multiplier {multiplier}")
    if not released:
        return reply(msg, **{proto.METRICS: MetricRecord(status)})
    values = evaluation.noisy_release(_exact_evaluation(split, options, cfg, model), options.eval_caps, multiplier)
    if evaluation.suppressed(values, minimum):  # on the noisy count (exact only in a non-private job)
        return reply(msg, **{proto.METRICS: MetricRecord({"suppressed": 1, **status})})
    return reply(msg, **{proto.METRICS: MetricRecord({**values, "suppressed": 0, **status})})


def window_of(options: PropensityOptions) -> LabelWindow:
    return options.window


__all__ = ["FeatureCaps", "evaluate", "prepare", "query", "train"]

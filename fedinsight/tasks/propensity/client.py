"""The partner side of a propensity/LTV job: Flower handlers registered on the fedinsight ClientApp.

Message types (the job's phases, in order):

- ``query.propensity`` phase ``hello``: reply with this partner's name (it names its budget in the ledger);
- ``query.propensity`` phase ``stats``: the noisy feature statistics for the shared scaler;
- ``train.propensity``: DP-SGD on the training customers, reply with the new weights;
- ``evaluate.propensity``: fixed-size evaluation counts on the held-out customers;
- ``query.propensity`` phase ``ltv-hist``: a noisy histogram of predicted LTV for the tier thresholds.

Privacy is enforced here, on the partner, not only on the coordinator: every release is priced first on
this partner's own Opacus accountants (:class:`~fedinsight.privacy.dpsgd.PartnerAccountant`), kept in the
node's ``context.state`` across rounds: one for this job, checked against the job's epsilon, and one for
the partner's lifetime, checked against its own cap (``--node-config epsilon-budget=...``) and, with
``--node-config state-dir=...``, kept in a partner-local file across jobs. A release that would pass
either cap is refused, and the reply says so (``refused``, ``epsilon``, ``epsilon-would-be``,
``epsilon-budget``) instead of carrying anything else.
DP noise and Poisson sampling use fresh OS entropy, never a seed the coordinator could know.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

import fedinsight.tasks.propensity.protocol as proto
from fedinsight.core.errors import ConfigError
from fedinsight.core.files import atomic_output_file
from fedinsight.models.federated_stats import partner_stats, spend_histogram, stats_sensitivity
from fedinsight.models.metrics import EvalSummary, assign_tiers, exact_metrics
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
from fedinsight.partner.clientapp import app
from fedinsight.partner.view import load_partner_data, partner_data_path, partner_id
from fedinsight.privacy.dpsgd import DpsgdPlan, PartnerAccountant, train_dpsgd, train_sgd
from fedinsight.privacy.mechanisms import gaussian
from fedinsight.tasks.propensity.features import (
    FEATURES,
    FeatureCaps,
    LabelWindow,
    customer_table,
    holdout_mask,
    spend_from_unit,
    unit_features,
    unit_spend,
)

STATE_ALL = "propensity.accountant"
STATE_JOB = "propensity.accountant-job"
STATE_COUNT = "propensity.noisy-count"
ACCOUNTANT_FILE = "propensity_accountant.json"


# --- the partner's data, prepared once per process ----------------------------------------------

@dataclass(frozen=True)
class PartnerSplit:
    """Unit-scale features and labels of this partner's training and held-out customers."""

    unit_train: np.ndarray
    buys_train: np.ndarray
    spend_train: np.ndarray
    unit_test: np.ndarray
    buys_test: np.ndarray
    spend_test: np.ndarray


_SPLITS: dict[tuple[Any, ...], PartnerSplit] = {}


def prepare(context: Context, cfg: dict[str, Any]) -> PartnerSplit:
    """This partner's split for the job's window, caps, held-out share and split seed (cached per process:
    a Ray actor or SuperNode serves every round of a job)."""
    window, caps = LabelWindow.from_config(cfg), FeatureCaps.from_config(cfg)
    key = (str(partner_data_path(context, cfg).resolve()), window, caps, float(cfg["test-share"]), int(cfg["seed"]))
    if key not in _SPLITS:
        data = load_partner_data(context, cfg)
        if data.transactions is None:
            raise ConfigError(f"partner {partner_id(context)} has no transactions table; propensity needs purchases")
        table = customer_table(data.transactions, window)  # type: ignore[arg-type]
        test = holdout_mask(table.index, key[3], key[4])
        unit = unit_features(table, window, caps)
        buys, spend = table["buys_again"].to_numpy(float), table["spend"].to_numpy(float)
        if len(_SPLITS) > 16:
            _SPLITS.clear()
        _SPLITS[key] = PartnerSplit(unit[~test], buys[~test], spend[~test], unit[test], buys[test], spend[test])
    return _SPLITS[key]


# --- the partner's accountant ---------------------------------------------------------------------

def job_budget(context: Context, cfg: dict[str, Any]) -> float:
    """This job's cap on this partner: the job's target, or lower if the simulation gives this partner a
    smaller cap in ``partner-budgets`` (``partner-1=0.5,partner-3=0.2``)."""
    caps = [float(cfg["epsilon"])]
    pid = partner_id(context)
    for item in filter(None, (s.strip() for s in str(cfg.get("partner-budgets", "")).split(","))):
        name, _, value = item.partition("=")
        if name.strip() == pid:
            caps.append(float(value))
    return min(caps)


def lifetime_budget(context: Context) -> float:
    """The partner's own cap on everything its accountant has ever seen (``--node-config epsilon-budget=``);
    unlimited when not set (the coordinator's ledger still limits every job)."""
    value = context.node_config.get("epsilon-budget")
    return float(value) if value is not None else math.inf


def _state_file(context: Context) -> Path | None:
    folder = context.node_config.get("state-dir")
    return Path(str(folder)) / ACCOUNTANT_FILE if folder else None


def _history(context: Context, key: str) -> list[tuple[float, float, int]]:
    if key == STATE_ALL and (path := _state_file(context)) is not None and path.is_file():
        return PartnerAccountant.history_from_dict(json.loads(path.read_text()))
    if key in context.state:
        return PartnerAccountant.history_from_dict(dict(context.state[key]))  # type: ignore[arg-type]
    return []


@dataclass
class Accountants:
    """This partner's lifetime accountant (checked against its own cap) and this job's (checked against
    the job's target): a release goes ahead only if neither would pass its cap."""

    all: PartnerAccountant
    job: PartnerAccountant

    def binding(self, entries: list[tuple[float, float, int]]) -> PartnerAccountant | None:
        """The accountant whose cap ``entries`` would pass, if any."""
        for acc in (self.all, self.job):
            if acc.would_exceed(entries):
                return acc
        return None

    def refusal(self, entries: list[tuple[float, float, int]], code: int = proto.REFUSED_BUDGET) -> MetricRecord:
        acc = self.binding(entries) or self.job
        return MetricRecord({"refused": code, "epsilon": acc.epsilon(), "epsilon-job": self.job.epsilon(),
                             "epsilon-would-be": acc.epsilon_after(entries) if entries else 0.0,
                             "epsilon-budget": acc.budget})

    def metrics(self) -> dict[str, float]:
        return {"refused": 0, "epsilon": self.all.epsilon(), "epsilon-job": self.job.epsilon(),
                "epsilon-would-be": 0.0, "epsilon-budget": min(self.all.budget, self.job.budget)}


def load_accountants(context: Context, cfg: dict[str, Any]) -> Accountants:
    delta = float(cfg["delta"])
    job_key = f"{STATE_JOB}:{cfg['job-id']}"
    return Accountants(PartnerAccountant(_history(context, STATE_ALL), delta=delta, budget=lifetime_budget(context)),
                       PartnerAccountant(_history(context, job_key), delta=delta, budget=job_budget(context, cfg)))


def save_accountants(context: Context, cfg: dict[str, Any], acc: Accountants) -> None:
    context.state[STATE_ALL] = ConfigRecord(acc.all.to_dict())  # type: ignore[arg-type]
    context.state[f"{STATE_JOB}:{cfg['job-id']}"] = ConfigRecord(acc.job.to_dict())  # type: ignore[arg-type]
    if (path := _state_file(context)) is not None:
        with atomic_output_file(path) as tmp:
            tmp.write_text(json.dumps(acc.all.to_dict()))


def non_private_allowed(context: Context) -> bool:
    """Only simulated partners, or partners started with ``allow-non-private=true``, train without DP."""
    node = context.node_config
    if "data-path" not in node:
        return True
    return str(node.get("allow-non-private", "false")).lower() in ("1", "true", "yes")


# --- message helpers ------------------------------------------------------------------------------

def _config(msg: Message) -> dict[str, Any]:
    return dict(msg.content[proto.CONFIG])  # type: ignore[arg-type]


def _reply(msg: Message, **records: Any) -> Message:
    return Message(RecordDict(records), reply_to=msg)


def _model(msg: Message, cfg: dict[str, Any]) -> PropensityNet:
    arrays: ArrayRecord = msg.content[proto.ARRAYS]  # type: ignore[assignment]
    weights = {k: v.numpy() for k, v in arrays.items()}
    return set_weights(PropensityNet(len(FEATURES), str(cfg["model"])), weights)


def _scalers(cfg: dict[str, Any]) -> tuple[SharedScaler, TargetScaler]:
    return (SharedScaler(tuple(cfg["scaler-mean"]), tuple(cfg["scaler-std"])),
            TargetScaler(float(cfg["target-mean"]), float(cfg["target-std"])))


def _predict_ltv(model: PropensityNet, unit: np.ndarray, cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    scaler, target = _scalers(cfg)
    p, z_hat = predict(model, scaler.transform(unit))
    spend_if_buy = spend_from_unit(np.clip(target.inverse(z_hat), 0.0, 1.0), FeatureCaps.from_config(cfg))
    return p, p * spend_if_buy


def _plan(cfg: dict[str, Any]) -> DpsgdPlan | None:
    return None if bool(cfg.get("non-private", False)) else DpsgdPlan.from_dict(cfg)


# --- handlers -------------------------------------------------------------------------------------

@app.query(proto.ACTION)
def query(msg: Message, context: Context) -> Message:
    """Dispatch on the job phase named in the message's config."""
    cfg = _config(msg)
    phase = str(cfg.get("phase", ""))
    if phase == "hello":
        return _reply(msg, **{proto.PARTNER: ConfigRecord({"partner-id": partner_id(context)})})
    if phase == "stats":
        return _stats(msg, context, cfg)
    if phase == "ltv-hist":
        return _ltv_hist(msg, context, cfg)
    raise ConfigError(f"unknown propensity phase '{phase}' (expected one of {', '.join(proto.PHASES)})")


def _gaussian_release(msg: Message, context: Context, cfg: dict[str, Any], values: np.ndarray, sensitivity: float,
                      key: str) -> Message:
    """Release ``values`` with the plan's Gaussian noise, if the partner's budget allows it."""
    acc = load_accountants(context, cfg)
    plan = _plan(cfg)
    if plan is None:
        if not non_private_allowed(context):
            return _reply(msg, **{proto.METRICS: acc.refusal([], proto.REFUSED_NON_PRIVATE)})
        noisy = np.asarray(values, float)
    else:
        entry = [(plan.gaussian_noise_multiplier, 1.0, 1)]
        if acc.binding(entry) is not None:
            return _reply(msg, **{proto.METRICS: acc.refusal(entry)})
        noisy = gaussian(values, sensitivity, plan.gaussian_noise_multiplier).values
        acc.all.record_gaussian(plan.gaussian_noise_multiplier)
        acc.job.record_gaussian(plan.gaussian_noise_multiplier)
        save_accountants(context, cfg, acc)
    return _reply(msg, **{proto.METRICS: MetricRecord({key: [float(v) for v in noisy], **acc.metrics()})})


def _stats(msg: Message, context: Context, cfg: dict[str, Any]) -> Message:
    split = prepare(context, cfg)
    vector = partner_stats(split.unit_train, split.buys_train, unit_spend(split.spend_train,
                                                                         FeatureCaps.from_config(cfg)))
    reply = _gaussian_release(msg, context, cfg, vector, stats_sensitivity(len(FEATURES)), "stats")
    metrics: MetricRecord = reply.content[proto.METRICS]  # type: ignore[assignment]
    if int(metrics["refused"]) == 0:  # the noisy count weights this partner in FedAvg (post-processing)
        context.state[STATE_COUNT] = ConfigRecord({"n": max(1.0, float(metrics["stats"][0]))})  # type: ignore[index]
    return reply


def _ltv_hist(msg: Message, context: Context, cfg: dict[str, Any]) -> Message:
    split = prepare(context, cfg)
    _, ltv = _predict_ltv(_model(msg, cfg), split.unit_train, cfg)
    hist = spend_histogram(unit_spend(ltv, FeatureCaps.from_config(cfg)))
    return _gaussian_release(msg, context, cfg, hist, 1.0, "ltv-hist")


@app.train(proto.ACTION)
def train(msg: Message, context: Context) -> Message:
    """Local DP-SGD steps from the global weights; the reply carries the new weights and privacy metrics."""
    cfg = _config(msg)
    acc = load_accountants(context, cfg)
    plan = _plan(cfg)
    if plan is None and not non_private_allowed(context):
        return _reply(msg, **{proto.METRICS: acc.refusal([], proto.REFUSED_NON_PRIVATE)})
    steps = int(cfg["steps-per-round"])
    if plan is not None:
        entry = [(plan.noise_multiplier, plan.sample_rate, steps)]
        if acc.binding(entry) is not None:
            return _reply(msg, **{proto.METRICS: acc.refusal(entry)})
    split = prepare(context, cfg)
    scaler, target = _scalers(cfg)
    data = tensors(scaler.transform(split.unit_train), split.buys_train,
                   target.transform(unit_spend(split.spend_train, FeatureCaps.from_config(cfg))))
    model = _model(msg, cfg)
    lr = float(cfg["lr"])
    if plan is None:
        seed = int(cfg["seed"]) * 100_003 + int(cfg.get("server-round", 0)) * 101 + int(
            context.node_config.get("partition-id", 0))
        trained, stats = train_sgd(model, data, propensity_loss, sample_rate=float(cfg["sample-rate"]), steps=steps,
                                   lr=lr, seed=seed, max_grad_norm=float(cfg["max-grad-norm"]))
    else:
        trained, stats = train_dpsgd(model, data, propensity_loss, noise_multiplier=plan.noise_multiplier,
                                     sample_rate=plan.sample_rate, steps=steps, max_grad_norm=plan.max_grad_norm,
                                     lr=lr, accountant=acc.all)
        acc.job.record_steps(plan.noise_multiplier, plan.sample_rate, steps)
        save_accountants(context, cfg, acc)
    count = context.state[STATE_COUNT]["n"] if STATE_COUNT in context.state else float(len(split.buys_train))
    arrays = ArrayRecord({k: Array(np.asarray(v)) for k, v in get_weights(trained).items()})
    metrics = MetricRecord({"num-examples": float(count), "train-seconds": stats.seconds, "steps": stats.steps,
                            **acc.metrics()})
    return _reply(msg, **{proto.ARRAYS: arrays, proto.METRICS: metrics})


@app.evaluate(proto.ACTION)
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global model on the held-out customers; reply with fixed-size counts and scalars.

    These counts are not noised: held-out customers never take part in training, and the coordinator
    needs exact evaluation to compare models (see docs/propensity.md). A partner with fewer held-out
    customers than its minimum reports nothing but ``suppressed = 1``.
    """
    cfg = _config(msg)
    split = prepare(context, cfg)
    minimum = max(proto.MIN_EVAL_CUSTOMERS, int(context.node_config.get("min-eval-customers", 0)))
    if len(split.buys_test) < minimum:
        empty = EvalSummary().to_metrics()
        nan = {k: float("nan") for k in proto.EVALUATE_SCALARS}
        return _reply(msg, **{proto.METRICS: MetricRecord({"num-examples": 0.0, "suppressed": 1, **empty, **nan})})
    p, ltv = _predict_ltv(_model(msg, cfg), split.unit_test, cfg)
    tiers: dict[str, np.ndarray] = {}
    if "tier-true" in cfg and "tier-pred" in cfg:
        tiers = {"true_tiers": assign_tiers(split.spend_test, tuple(cfg["tier-true"])),  # type: ignore[arg-type]
                 "predicted_tiers": assign_tiers(ltv, tuple(cfg["tier-pred"]))}  # type: ignore[arg-type]
    summary = EvalSummary.compute(split.buys_test, p, spend=split.spend_test, ltv=ltv, **tiers)
    local = exact_metrics(split.buys_test, p)
    values: dict[str, Any] = {"num-examples": float(len(p)), "suppressed": 0, **summary.to_metrics()}
    values.update({k: float(local[k]) for k in proto.EVALUATE_SCALARS})
    return _reply(msg, **{proto.METRICS: MetricRecord(values)})

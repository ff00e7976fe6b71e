"""The coordinator's propensity/LTV job (``run_config['task'] == 'propensity'``).

Phases, each a Flower message round to the partners (see :mod:`fedinsight.tasks.propensity.client`):

1. wait until every expected partner is connected (Message-API FedAvg may otherwise sample too few),
   then ``hello``: learn the partners' names;
2. plan the privacy cost of the *whole* run (:func:`~fedinsight.privacy.dpsgd.plan_dpsgd`), price it per
   partner on the privacy ledger and refuse the job before any partner computes if one would overspend;
   otherwise charge it (feature statistics, DP-SGD, LTV histogram);
3. ``stats``: noisy federated sums -> one shared feature scaler, the spend target's scaler and the true
   LTV tier thresholds;
4. FedAvg rounds (:class:`~fedinsight.tasks.propensity.strategy.PropensityFedAvg`) with evaluation on the
   partners' held-out customers after every round;
5. ``ltv-hist``: a noisy histogram of predicted LTV -> the predicted-tier thresholds;
6. a final evaluation with the tiers, then ``model.pt`` and ``summary.json`` in ``out-dir``.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid

import fedinsight.tasks.propensity.protocol as proto
from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.core.files import atomic_output_file
from fedinsight.federation.guard import GuardLog, ReplySpec
from fedinsight.federation.partners import wait_for_partners
from fedinsight.models.federated_stats import PooledStats, histogram_cdf, histogram_quantile, stats_sensitivity
from fedinsight.models.metrics import summary_curves
from fedinsight.models.propensity import MODEL_KINDS, ModelBundle, build_model, get_weights
from fedinsight.privacy.dpsgd import DpsgdPlan, plan_dpsgd
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks.propensity.features import FEATURES, FeatureCaps, LabelWindow, spend_from_unit
from fedinsight.tasks.propensity.strategy import (
    PartnerTrack,
    PropensityFedAvg,
    evaluate_spec,
    evaluation_result,
    pooled_summary,
)

ProgressListener = Callable[[str, int, dict[str, Any]], None]
_LISTENERS: list[ProgressListener] = []
_LISTENERS_LOCK = threading.Lock()


@contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Receive ``(phase, step, info)`` events while a job runs in this process (the CLI's progress bar)."""
    with _LISTENERS_LOCK:
        _LISTENERS.append(listener)
    try:
        yield
    finally:
        with _LISTENERS_LOCK:
            _LISTENERS.remove(listener)


def _emit(phase: str, step: int, info: dict[str, Any]) -> None:
    with _LISTENERS_LOCK:
        listeners = list(_LISTENERS)
    for listener in listeners:
        listener(phase, step, info)


@dataclass(frozen=True)
class PropensityJob:
    """A propensity job's settings; travels as Flower run config (flat scalars, kebab-case keys)."""

    partners: int
    rounds: int
    out_dir: str
    window_start: str
    window_cutoff: str
    window_end: str
    data_root: str = ""
    epsilon: float = 1.0
    delta: float = 1e-5
    non_private: bool = False
    model: str = "logreg"
    seed: int = 0
    test_share: float = 0.2
    sample_rate: float = 0.1
    local_epochs: float = 1.0
    lr: float = 0.5
    max_grad_norm: float = 3.0
    stats_share: float = 0.15
    ema: float = 0.7
    tier_mid: float = 0.5  # true tiers: high = top (1 - tier_high), mid = next, by holdout spend
    tier_high: float = 0.8
    cap_amount: float = FeatureCaps.amount
    cap_total_amount: float = FeatureCaps.total_amount
    cap_quantity: float = FeatureCaps.quantity
    partner_budgets: str = ""  # simulation only: "partner-1=0.5,partner-3=0.2" (lower caps of some partners)
    ledger_url: str = ""
    job_id: str = ""
    requester: str = "simulation"
    dataset: str = ""
    wait_timeout: float = 120.0
    round_timeout: float = 3600.0

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ConfigError(f"unknown --model '{self.model}', expected one of {', '.join(MODEL_KINDS)}")
        if self.partners < 1 or self.rounds < 1:
            raise ConfigError(f"need --partners >= 1 and --rounds >= 1 (got {self.partners}, {self.rounds})")
        if not 0 < self.tier_mid < self.tier_high < 1:
            raise ConfigError(f"tier levels must satisfy 0 < mid < high < 1 (got {self.tier_mid}, {self.tier_high})")
        if not self.non_private and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ConfigError(f"--epsilon must be a positive number (got {self.epsilon}); or use --non-private")
        if not 0 < self.sample_rate <= 1 or self.local_epochs <= 0 or self.lr <= 0:
            raise ConfigError("sample rate must be in (0, 1], local epochs and learning rate positive")
        _ = self.window  # validates start < cutoff < end

    @property
    def window(self) -> LabelWindow:
        return LabelWindow(self.window_start, self.window_cutoff, self.window_end)  # type: ignore[arg-type]

    @property
    def caps(self) -> FeatureCaps:
        return FeatureCaps(self.cap_amount, self.cap_total_amount, self.cap_quantity)

    @property
    def steps_per_round(self) -> int:
        return max(1, round(self.local_epochs / self.sample_rate))

    def to_run_config(self) -> dict[str, str | int | float | bool]:
        return {"task": "propensity", **{f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> PropensityJob:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            key = f.name.replace("_", "-")
            if key in run_config:
                kwargs[f.name] = run_config[key]
        try:
            job = cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"propensity run config is incomplete: {exc}") from exc
        return job if job.job_id else cls(**{**kwargs, "job_id": f"propensity-{uuid.uuid4().hex[:12]}"})

    def plan(self) -> DpsgdPlan | None:
        if self.non_private:
            return None
        return plan_dpsgd(self.epsilon, self.delta, sample_rate=self.sample_rate, steps_per_round=self.steps_per_round,
                          rounds=self.rounds, max_grad_norm=self.max_grad_norm, gaussian_releases=2,
                          gaussian_share=self.stats_share)

    def message_config(self, plan: DpsgdPlan | None) -> dict[str, Any]:
        """What every partner needs to know (simulated partners do not get the run config)."""
        cfg: dict[str, Any] = {
            **self.window.to_config(), **self.caps.to_config(), "data-root": self.data_root,
            "test-share": self.test_share, "seed": self.seed, "model": self.model, "epsilon": self.epsilon,
            "delta": self.delta, "non-private": self.non_private, "job-id": self.job_id,
            "partner-budgets": self.partner_budgets, "steps-per-round": self.steps_per_round,
            "sample-rate": self.sample_rate, "max-grad-norm": self.max_grad_norm,
        }
        if plan is not None:
            cfg.update(plan.to_dict())
        return cfg


# --- small message helpers ----------------------------------------------------------------------



def _query(grid: Grid, nodes: list[int], cfg: dict[str, Any], phase: str, timeout: float,
           arrays: ArrayRecord | None = None) -> list[Message]:
    records: dict[str, Any] = {proto.CONFIG: ConfigRecord({**cfg, "phase": phase})}
    if arrays is not None:
        records[proto.ARRAYS] = arrays
    messages = [Message(RecordDict(records), dst_node_id=n, message_type=f"query.{proto.ACTION}") for n in nodes]
    return list(grid.send_and_receive(messages, timeout=timeout))


def _arrays(weights: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v, dtype=np.float32)) for k, v in weights.items()})


def _release_phase(grid: Grid, partners: dict[int, PartnerTrack], cfg: dict[str, Any], phase: str, key: str,
                   guard: GuardLog, timeout: float, arrays: ArrayRecord | None = None) -> dict[int, np.ndarray]:
    """A noisy-release phase: each consenting partner's vector, refusals recorded on the partner."""
    nodes = [n for n, p in partners.items() if p.refused is None and p.failed is None]
    replies = _query(grid, nodes, cfg, phase, timeout, arrays)
    for msg in replies:
        if msg.has_error() and msg.metadata.src_node_id in partners:
            partners[msg.metadata.src_node_id].failed = msg.error.reason
    spec = ReplySpec(phase, metrics=proto.reply_metrics(phase, len(FEATURES)), records=(proto.METRICS,))
    vectors: dict[int, np.ndarray] = {}
    for msg in guard.filter(replies, spec):
        metrics = msg.content[proto.METRICS]
        track = partners[msg.metadata.src_node_id]
        track.epsilon, track.epsilon_job = float(metrics["epsilon"]), float(metrics["epsilon-job"])
        if int(metrics["refused"]) != 0:
            track.refused = {"phase": phase, "code": float(metrics["refused"]), "epsilon": float(metrics["epsilon"]),
                             "epsilon_would_be": float(metrics["epsilon-would-be"]),
                             "epsilon_budget": float(metrics["epsilon-budget"])}
            continue
        vectors[msg.metadata.src_node_id] = np.asarray(metrics[key], dtype=float)
    return vectors


# --- the privacy ledger -------------------------------------------------------------------------

def charge_ledger(job: PropensityJob, plan: DpsgdPlan, partner_ids: list[str]) -> PrivacyLedger:
    """Price the whole run for every partner; refuse it before anything runs, or charge all of it."""
    ledger = PrivacyLedger(job.ledger_url or None)
    for pid in partner_ids:
        ledger.ensure_budget(pid, job.epsilon, job.delta)
    over = []
    for pid in partner_ids:
        status = ledger.status(pid)
        after = ledger.price(pid, plan.events())
        if after > status.epsilon_budget + 1e-9:
            over.append(f"{pid}: would reach epsilon {after:.4g} > budget {status.epsilon_budget:.4g} "
                        f"(spent {status.epsilon_spent:.4g})")
    if over:
        raise BudgetExceededError(f"refused propensity job '{job.job_id}' before any partner computed: "
                                  + "; ".join(over) + ". Lower --rounds/--epsilon or use a fresh --db.")
    common = {"job_id": job.job_id, "requester": job.requester}
    ledger.charge(partner_ids, plan.gaussian_event(), kind="stats",
                  description=f"noisy feature statistics for the shared scaler (Gaussian, multiplier "
                              f"{plan.gaussian_noise_multiplier:.3f})", **common)
    ledger.charge(partner_ids, plan.training_event(), kind="training",
                  description=f"DP-SGD {job.model}: noise {plan.noise_multiplier:.3f}, sample rate "
                              f"{plan.sample_rate:g}, {plan.total_steps} steps, clip {plan.max_grad_norm:g}", **common)
    ledger.charge(partner_ids, plan.gaussian_event(), kind="stats",
                  description="noisy predicted-LTV histogram for the tier thresholds", **common)
    return ledger


# --- the job ------------------------------------------------------------------------------------

@dataclass
class JobState:
    job: PropensityJob
    plan: DpsgdPlan | None
    partners: dict[int, PartnerTrack]
    guard: GuardLog = field(default_factory=GuardLog)
    ledger: PrivacyLedger | None = None


def _hello(grid: Grid, job: PropensityJob, guard: GuardLog) -> dict[int, PartnerTrack]:
    nodes = wait_for_partners(grid, job.partners, job.wait_timeout)
    replies = _query(grid, nodes, {"job-id": job.job_id}, "hello", job.round_timeout)
    spec = ReplySpec("hello", config=proto.HELLO_CONFIG, records=(proto.PARTNER,))
    partners = {msg.metadata.src_node_id: PartnerTrack(str(msg.content[proto.PARTNER]["partner-id"]))
                for msg in guard.filter(replies, spec)}
    names = [p.partner_id for p in partners.values()]
    if len(partners) < len(nodes) or len(set(names)) != len(names):
        raise ConfigError(f"partners did not all introduce themselves with distinct names: {sorted(names)}; "
                          + "; ".join(guard.failures + guard.violations))
    return partners


def _nothing_released(partners: dict[int, PartnerTrack], guard: GuardLog) -> None:
    """Say why no partner released its statistics: budget refusals, non-private refusals or failures."""
    budget = [f"{p.partner_id} (at epsilon {p.refused['epsilon']:.4g}, the release would reach "
              f"{p.refused['epsilon_would_be']:.4g} > its budget {p.refused['epsilon_budget']:.4g})"
              for p in partners.values() if p.refused and p.refused["code"] == proto.REFUSED_BUDGET]
    if budget:
        raise BudgetExceededError("every partner refused to release feature statistics: " + "; ".join(budget))
    if any(p.refused and p.refused["code"] == proto.REFUSED_NON_PRIVATE for p in partners.values()):
        raise ConfigError("the partners do not allow non-private training (start them with "
                          "--node-config allow-non-private=true, or drop --non-private)")
    raise ConfigError("no partner released feature statistics: " + "; ".join(guard.failures + guard.violations))


def _tier_thresholds(hist: np.ndarray, pred_hist: np.ndarray | None, job: PropensityJob,
                     ) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """True tiers by quantiles of holdout spend; predicted tiers at the same tier *shares* of predicted LTV."""
    mid_u, high_u = histogram_quantile(hist, job.tier_mid), histogram_quantile(hist, job.tier_high)
    true = (float(spend_from_unit(mid_u, job.caps)), float(spend_from_unit(high_u, job.caps)))
    if pred_hist is None:
        return true, None
    low_share, below_high = histogram_cdf(hist, mid_u), histogram_cdf(hist, high_u)
    pred = (float(spend_from_unit(histogram_quantile(pred_hist, low_share), job.caps)),
            float(spend_from_unit(histogram_quantile(pred_hist, below_high), job.caps)))
    return true, pred


def run(grid: Grid, context: Context) -> None:
    """The ServerApp entry point for ``task = "propensity"``."""
    started = time.perf_counter()
    job = PropensityJob.from_run_config(dict(context.run_config))
    plan = job.plan()
    guard = GuardLog()
    _emit("hello", 0, {})
    partners = _hello(grid, job, guard)
    state = JobState(job, plan, partners, guard)
    if plan is not None:
        state.ledger = charge_ledger(job, plan, [p.partner_id for p in partners.values()])
    cfg = job.message_config(plan)

    _emit("stats", 0, {})
    vectors = _release_phase(grid, partners, cfg, "stats", "stats", guard, job.round_timeout)
    if not vectors:
        _nothing_released(partners, guard)
    noise = 0.0 if plan is None else plan.gaussian_noise_multiplier * stats_sensitivity(len(FEATURES))
    pooled = PooledStats.from_vectors(list(vectors.values()), len(FEATURES), noise)
    scaler, target = pooled.scaler(), pooled.target(job.caps.log_unit)
    cfg.update({"scaler-mean": list(scaler.mean), "scaler-std": list(scaler.std), "target-mean": target.mean,
                "target-std": target.std})

    model = build_model(len(FEATURES), job.model, job.seed)
    initial = get_weights(model)
    strategy = PropensityFedAvg(partners=partners, shapes={k: tuple(v.shape) for k, v in initial.items()},
                                n_features=len(FEATURES), rounds=job.rounds, base_lr=job.lr, ema=job.ema, guard=guard,
                                progress=_emit)
    result = strategy.start(grid, _arrays(initial), num_rounds=job.rounds, timeout=job.round_timeout,
                            train_config=ConfigRecord(cfg), evaluate_config=ConfigRecord(cfg))
    final = strategy.released_arrays(result.arrays if result.arrays is not None else _arrays(initial))

    _emit("ltv-hist", 0, {})
    pred = _release_phase(grid, partners, cfg, "ltv-hist", "ltv-hist", guard, job.round_timeout, final)
    true_t, pred_t = _tier_thresholds(pooled.spend_hist, np.sum(list(pred.values()), axis=0) if pred else None, job)
    if pred_t is not None:
        cfg.update({"tier-true": list(true_t), "tier-pred": list(pred_t)})
    _emit("final", 0, {})
    eval_nodes = strategy.evaluation_nodes()
    messages = [Message(RecordDict({proto.ARRAYS: final, proto.CONFIG: ConfigRecord(cfg)}), dst_node_id=n,
                        message_type=f"evaluate.{proto.ACTION}") for n in eval_nodes]
    replies = list(grid.send_and_receive(messages, timeout=job.round_timeout))
    accepted = guard.filter(replies, evaluate_spec(len(FEATURES)))
    final_metrics = evaluation_result(accepted)
    curves = summary_curves(pooled_summary(accepted)) if accepted else {}

    weights = {k: v.numpy() for k, v in final.items()}
    bundle = ModelBundle(kind=job.model, features=FEATURES, weights=weights, scaler=scaler, target=target,
                         tier_thresholds=pred_t or (math.inf, math.inf),
                         config={**job.window.to_config(), **job.caps.to_config(), "job-id": job.job_id,
                                 "tier-true": list(true_t)})
    summary = build_summary(state, strategy, final_metrics, curves, started, true_t, pred_t)
    write_outputs(Path(job.out_dir), bundle, summary)
    _emit("done", 0, summary)


def json_finite(value: Any) -> Any:
    """JSON cannot hold NaN or infinity: they become null, recursively (numpy scalars become Python numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_finite(v) for v in value]
    if isinstance(value, np.floating | np.integer):
        return json_finite(value.item())
    return value


def privacy_summary(state: JobState) -> dict[str, Any]:
    """Per-partner epsilon from the partners' own accountants, checked against the coordinator's ledger."""
    job, plan = state.job, state.plan
    spent = {p.partner_id: p.epsilon_job for p in sorted(state.partners.values(), key=lambda t: t.partner_id)}
    out: dict[str, Any] = {
        "epsilon_target": None if plan is None else job.epsilon, "delta": job.delta, "non_private": plan is None,
        "epsilon_spent": spent, "epsilon_spent_max": max(spent.values(), default=0.0),
        "refused": {p.partner_id: p.refused for p in state.partners.values() if p.refused},
        "failed": {p.partner_id: p.failed for p in state.partners.values() if p.failed},
    }
    if plan is None or state.ledger is None:
        return out
    charged = compose_epsilon(plan.events(), job.delta, state.ledger.accountant)
    completed = {p.partner_id for p in state.partners.values() if p.refused is None and p.failed is None}
    agree = all(e <= charged + 1e-6 for e in spent.values()) and all(
        abs(spent[pid] - charged) <= 1e-3 * max(1.0, charged) for pid in completed)
    out.update({
        "plan": plan.to_dict(), "epsilon_planned": plan.planned_epsilon(),
        "ledger_epsilon_charged_this_job": charged,
        "ledger_epsilon_spent": {pid: state.ledger.status(pid).epsilon_spent for pid in sorted(spent)},
        "ledger_url": job.ledger_url or "default", "accountants_agree_with_ledger": bool(agree),
    })
    return out


def build_summary(state: JobState, strategy: PropensityFedAvg, final: dict[str, float], curves: dict[str, Any],
                  started: float,
                  true_t: tuple[float, float], pred_t: tuple[float, float] | None) -> dict[str, Any]:
    job = state.job
    summary: dict[str, Any] = {
        "task": "propensity", "dataset": job.dataset, "partners": job.partners, "rounds": job.rounds,
        "seed": job.seed, "model": job.model, "job_id": job.job_id,
        "privacy": privacy_summary(state),
        "metrics": {"federated": final, "per_round": strategy.log.per_round},
        "curves": {"federated": curves},
        "ltv_tiers": {"levels": [job.tier_mid, job.tier_high], "true_thresholds": list(true_t),
                      "predicted_thresholds": None if pred_t is None else list(pred_t)},
        "messages": {"replies_inspected": state.guard.inspected, "violations": state.guard.violations,
                     "failures": state.guard.failures},
        "timing": {"server_wall_s": time.perf_counter() - started, "local_train_s": strategy.log.train_seconds},
        "settings": {k: v for k, v in asdict(job).items() if k not in ("out_dir", "data_root", "ledger_url")},
    }
    return json_finite(summary)


def write_outputs(out: Path, bundle: ModelBundle, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output_file(out / "model.pt") as tmp:
        bundle.save(tmp)
    with atomic_output_file(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False))

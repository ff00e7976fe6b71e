"""The coordinator's side of a propensity/LTV job.

After the framework's hello and the ledger charge of the whole run (planned here, :func:`plan`, with
:func:`~fedinsight.privacy.dpsgd.plan_dpsgd`), :func:`run` goes through the job's phases, each a Flower
message round to the partners (see :mod:`.client`):

1. ``stats``: noisy federated sums -> one shared feature scaler, the spend target's scaler and the true
   LTV tier thresholds;
2. FedAvg rounds (:class:`~.strategy.PropensityFedAvg`), with a DP evaluation on the partners' held-out
   customers after every round only when the job planned it (``eval-every-round``);
3. ``ltv-hist``: a noisy histogram of predicted LTV -> the predicted-tier thresholds;
4. a final DP evaluation with the tiers (unless ``evaluate = false``; :mod:`.evaluation`), then ``model.pt``
   in the job's output folder.

With ``noise-model = distributed-secagg`` every phase is SecAgg+ sums instead of per-partner replies
(:mod:`.secure_server`): the statistics, each training round, the LTV histogram and the evaluation; the coordinator
never holds one partner's vector.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from dp_accounting import dp_event
from flwr.app import Array, ArrayRecord, ConfigRecord

import fedinsight.tasks.propensity.protocol as proto
from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.core.files import atomic_output_file
from fedinsight.core.redact import safe_url
from fedinsight.federation import progress
from fedinsight.federation.budget import Charge
from fedinsight.federation.manifest import Manifest, Release
from fedinsight.federation.messages import request
from fedinsight.federation.secagg import masked_release, secagg_releases
from fedinsight.federation.task import Plan, Session, TaskResult
from fedinsight.models.federated_stats import PooledStats, histogram_cdf, histogram_quantile, stats_sensitivity
from fedinsight.models.metrics import summary_curves
from fedinsight.models.propensity import ModelBundle, build_model, get_weights
from fedinsight.privacy.dpsgd import DpsgdPlan
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon, dpsgd_event
from fedinsight.tasks.propensity import distributed, evaluation, recalibrate, secure_server
from fedinsight.tasks.propensity.features import FEATURES, spend_from_unit
from fedinsight.tasks.propensity.options import PropensityOptions
from fedinsight.tasks.propensity.strategy import PartnerTrack, PropensityFedAvg, read_evaluations

MODEL_FILE = "model.pt"


def _shapes(options: PropensityOptions) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in get_weights(build_model(len(FEATURES), options.model, options.seed)).items()}


def plan(session: Session, task: str) -> Plan:
    """The job's manifest and the three ledger lines (statistics, DP-SGD, LTV histogram) it is charged."""
    options: PropensityOptions = session.options  # type: ignore[assignment]
    dp = options.plan()
    partners = len(session.nodes)
    session.state["previous"] = recalibrate.previous(options.recalibrate_from, kind=options.model,
                                                     window=options.window) if options.recalibrate_from else None
    training_releases = secure_releases = None
    if options.distributed and dp is not None:
        enc = distributed.encoding(options, partners)  # refused here, before anyone computes, if no grid fits
        session.state["encoding"] = enc
        training_releases = secagg_releases(
            update_event=dpsgd_event(dp.noise_multiplier, 1.0, 1), count=options.rounds,
            mechanism=distributed.MECHANISM,
            what="the sum of the partner's customers' clipped gradients plus its discrete-Gaussian noise share, "
                 "masked (one full-batch step per round)",
            sensitivity=f"customer-level L2 {dp.max_grad_norm:g} (C' = {enc.sensitivity:.6g} after rounding onto "
                        f"the SecAgg+ grid); noise multiplier {dp.noise_multiplier:.4g} on the sum of "
                        f"{enc.honest} shares")
        secure_releases = _secure_manifest(options, partners)
    manifest = Manifest(task, tuple(proto.releases(options, dp, _shapes(options), len(FEATURES), training_releases,
                                                   secure_releases)))
    session.state["plan"] = dp
    if dp is None:
        return Plan(manifest, [], {"non_private": True})
    training = dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(dp.sample_rate, dp_event.GaussianDpEvent(dp.noise_multiplier)),
        dp.total_steps)
    at = f" (at delta {options.delta:g})"
    trust = distributed.trust_model(options, partners)
    if options.distributed:
        training_text = (f"full-batch DP-SGD {options.model} under SecAgg+ ({distributed.MECHANISM}): noise "
                         f"{dp.noise_multiplier:.3f} on the sum, {dp.total_steps} steps, clip {dp.max_grad_norm:g}; "
                         f"trust model: {trust}{at}")
    else:
        training_text = (f"DP-SGD {options.model}: noise {dp.noise_multiplier:.3f}, sample rate {dp.sample_rate:g}, "
                         f"{dp.total_steps} steps, clip {dp.max_grad_norm:g}{at}")
    noise = release_noise_text(options, partners)
    charges = [
        Charge("stats", dp.gaussian_event(), f"noisy feature statistics for the shared scaler (Gaussian, multiplier "
                                            f"{dp.gaussian_noise_multiplier:.3f}, {noise}){at}"),
        Charge("training", training, training_text),
        Charge("stats", dp.gaussian_event(), f"noisy predicted-LTV histogram for the tier thresholds ({noise}){at}"),
    ]
    extra: dict[str, Any] = {"plan": dp.to_dict(), "epsilon_planned": dp.planned_epsilon(),
                             "evaluation": evaluation_summary(options), "noise_model": options.noise_model,
                             "trust_model": trust}
    m = options.eval_noise_multiplier()
    if m is not None:
        event = evaluation.eval_event(m)
        count = options.eval_releases
        charges.append(Charge("evaluation", event if count == 1 else dp_event.SelfComposedDpEvent(event, count),
                              f"DP evaluation on held-out customers: {count} Gaussian release(s), multiplier "
                              f"{m:.3f}, L2 {evaluation.SENSITIVITY:g} per customer, {noise}{at}"))
    return Plan(manifest, charges, extra)


def release_noise_text(options: PropensityOptions, partners: int) -> str:
    """Who adds the noise of the statistics, LTV-histogram and evaluation releases, in words (ledger, summary)."""
    if options.distributed:
        return (f"distributed noise: SecAgg+ sum of discrete-Gaussian shares ({distributed.RELEASE_MECHANISM}); "
                + distributed.trust_model(options, partners))
    return "local noise on each partner"


def _secure_manifest(options: PropensityOptions, partners: int) -> dict[str, Release]:
    """Distributed noise: the statistics, LTV-histogram and evaluation releases as masked SecAgg+ vectors, each with
    its Gaussian event (the multiplier of the sum, what local mode adds per partner) and its grid (refused here,
    before anyone computes, if none fits)."""
    whats = {"stats": "the partner's feature statistics (count, sums, squares, spend histogram) plus its "
                      "discrete-Gaussian noise share, masked",
             "ltv-hist": "the partner's histogram of predicted LTV plus its discrete-Gaussian noise share, masked",
             "evaluate": "the partner's scaled evaluation vector on its held-out customers (logit histograms by label, "
                         "clipped loss and error sums, tier matrix, counts) plus its discrete-Gaussian noise share, "
                         "masked; no per-partner suppression (the coordinator withholds a pooled evaluation whose "
                         "noisy count is below the minimum)"}
    out: dict[str, Release] = {}
    for name in distributed.RELEASES:
        if name == "evaluate" and not options.eval_releases:
            continue
        enc = distributed.release_encoding(options, partners, name)
        out[name] = masked_release(
            event=dp_event.GaussianDpEvent(enc.noise_multiplier),
            count=options.eval_releases if name == "evaluate" else 1, what=whats[name],
            mechanism=distributed.RELEASE_MECHANISM,
            sensitivity=f"L2 {enc.clip:.4g} per customer (C' = {enc.sensitivity:.6g} after rounding onto the SecAgg+ "
                        f"grid); noise multiplier {enc.noise_multiplier:.4g} on the sum of {enc.honest} shares")
    return out


def evaluation_summary(options: PropensityOptions) -> dict[str, Any]:
    """What the job's evaluation costs and how it is noised (``summary.json`` privacy.evaluation)."""
    m = options.eval_noise_multiplier()
    out: dict[str, Any] = {"evaluate": options.evaluate, "releases": options.eval_releases,
                           "every_round": options.evaluate and options.eval_every_round,
                           "epsilon_share": options.eval_share if m is not None else 0.0,
                           "noise_multiplier": m, "sensitivity_l2": evaluation.SENSITIVITY,
                           "logit_bins": evaluation.DP_LOGIT_BINS,
                           "clip": {"log_loss": options.eval_log_loss_cap, "ltv_error": options.eval_error_cap},
                           "held_out": "each partner's own share (default 0.2) and secret key; the job's "
                                       "test-share is not used"}
    if m is not None:
        event = dp_event.SelfComposedDpEvent(evaluation.eval_event(m), options.eval_releases)
        out["epsilon"] = compose_epsilon([event], options.delta)  # the evaluation alone, at the job's delta
    return out


def message_config(session: Session, dp: DpsgdPlan | None, phase: str, **extra: Any) -> dict[str, Any]:
    options: PropensityOptions = session.options  # type: ignore[assignment]
    cfg = session.config(phase, **{"steps-per-round": options.steps_per_round}, **extra)
    if dp is not None:
        cfg.update(dp.to_dict())
        cfg["epsilon"] = options.epsilon  # the job's target (the plan's own covers training and statistics only)
        multiplier = options.eval_noise_multiplier()
        if multiplier is not None:
            cfg["eval-noise-multiplier"] = multiplier
    return cfg


def _weights(arrays: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in arrays.items()}


def _arrays(weights: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v, dtype=np.float32)) for k, v in weights.items()})


def _release_phase(session: Session, partners: dict[int, PartnerTrack], cfg: dict[str, Any], phase: str,
                   arrays: ArrayRecord | None = None) -> dict[int, np.ndarray]:
    """A noisy-release phase: each consenting partner's vector, refusals and failures recorded on the partner."""
    nodes = [n for n, p in partners.items() if p.refused is None and p.failed is None]
    replies = session.ask("query", phase, config={**cfg, "phase": phase}, arrays=arrays, nodes=nodes, strict=False)
    for n in nodes:
        if n not in replies and partners[n].failed is None:
            partners[n].failed = next((f for f in session.guard.failures[::-1] if f"node {n} " in f), "no reply")
    vectors: dict[int, np.ndarray] = {}
    for node, msg in replies.items():
        metrics = msg.content[proto.METRICS]
        track = partners[node]
        track.epsilon, track.epsilon_job = float(metrics["epsilon"]), float(metrics["epsilon-job"])
        if int(metrics["refused"]) != 0:
            track.refused = {"phase": phase, "code": float(metrics["refused"]), "epsilon": float(metrics["epsilon"]),
                             "epsilon_would_be": float(metrics["epsilon-would-be"]),
                             "epsilon_budget": float(metrics["epsilon-budget"])}
            continue
        vectors[node] = np.asarray(metrics[phase], dtype=float)
    return vectors


def _nothing_released(session: Session, partners: dict[int, PartnerTrack]) -> None:
    """Say why no partner released its statistics: budget refusals, non-private refusals or failures."""
    budget = [f"{p.partner_id} (at epsilon {p.refused['epsilon']:.4g}, the release would reach "
              f"{p.refused['epsilon_would_be']:.4g} > its budget {p.refused['epsilon_budget']:.4g})"
              for p in partners.values() if p.refused and p.refused["code"] == proto.REFUSED_BUDGET]
    if budget:
        raise BudgetExceededError("every partner refused to release feature statistics: " + "; ".join(budget))
    if any(p.refused and p.refused["code"] == proto.REFUSED_NON_PRIVATE for p in partners.values()):
        raise ConfigError("the partners do not allow non-private training (start them with "
                          "--node-config require-dp=false, or drop --non-private)")
    raise ConfigError("no partner released feature statistics: "
                      + "; ".join(session.guard.failures + session.guard.violations))


def _tier_thresholds(hist: np.ndarray, pred_hist: np.ndarray | None, options: PropensityOptions,
                     ) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """True tiers by quantiles of holdout spend; predicted tiers at the same tier *shares* of predicted LTV."""
    caps = options.caps
    mid_u, high_u = histogram_quantile(hist, options.tier_mid), histogram_quantile(hist, options.tier_high)
    true = (float(spend_from_unit(mid_u, caps)), float(spend_from_unit(high_u, caps)))
    if pred_hist is None:
        return true, None
    low_share, below_high = histogram_cdf(hist, mid_u), histogram_cdf(hist, high_u)
    pred = (float(spend_from_unit(histogram_quantile(pred_hist, low_share), caps)),
            float(spend_from_unit(histogram_quantile(pred_hist, below_high), caps)))
    return true, pred


def run(session: Session) -> TaskResult:
    """The phases of the job (see the module docstring)."""
    options: PropensityOptions = session.options  # type: ignore[assignment]
    dp: DpsgdPlan | None = session.state["plan"]
    partners = {n: PartnerTrack(info.partner_id) for n, info in session.partners.items()}
    cfg = message_config(session, dp, "stats")

    progress.report("feature statistics", 0, options.rounds + 3)
    sums: dict[str, secure_server.SecureRelease] = {}  # distributed noise: each release's decoded SecAgg+ sum
    if options.distributed:
        sums["stats"] = secure_server.release(session, cfg, "stats")
        pooled = PooledStats.from_vectors([sums["stats"].total], len(FEATURES), sums["stats"].noise_sd)
    else:
        vectors = _release_phase(session, partners, cfg, "stats")
        if not vectors:
            _nothing_released(session, partners)
        noise = 0.0 if dp is None else dp.gaussian_noise_multiplier * stats_sensitivity(len(FEATURES))
        pooled = PooledStats.from_vectors(list(vectors.values()), len(FEATURES), noise)
    scaler, target = pooled.scaler(), pooled.target(options.caps.log_unit)
    previous: recalibrate.Previous | None = session.state.get("previous")
    if previous is not None:  # warm start: the previous weights keep the scalers they were trained with
        scaler, target = previous.bundle.scaler, previous.bundle.target
        initial = recalibrate.initial_weights(previous.bundle)
    else:
        initial = get_weights(build_model(len(FEATURES), options.model, options.seed))
    cfg.update({"scaler-mean": list(scaler.mean), "scaler-std": list(scaler.std), "target-mean": target.mean,
                "target-std": target.std})

    strategy = PropensityFedAvg(partners=partners, shapes={k: tuple(v.shape) for k, v in initial.items()},
                                n_features=len(FEATURES), rounds=options.rounds, base_lr=options.lr, ema=options.ema,
                                guard=session.guard, task=session.task.name,
                                evaluate_rounds=options.evaluate and options.eval_every_round,
                                eval_noise_multiplier=options.eval_noise_multiplier())
    secure: secure_server.SecureTraining | None = None
    if options.distributed:  # one SecAgg+ sum per round, the coordinator steps (per-round evaluation: local mode)
        secure = secure_server.train(session, cfg, initial, pooled.n)
        final = _arrays(secure.weights)
        strategy.log.per_round = secure.per_round
    else:
        result = strategy.start(session.grid, _arrays(initial), num_rounds=options.rounds,
                                timeout=session.job.timeout, train_config=ConfigRecord({**cfg, "phase": "train"}),
                                evaluate_config=ConfigRecord({**cfg, "phase": "evaluate"}))
        final = strategy.released_arrays(result.arrays if result.arrays is not None else _arrays(initial))

    progress.report("LTV tiers", options.rounds + 1, options.rounds + 3)
    if options.distributed:
        sums["ltv-hist"] = secure_server.release(session, cfg, "ltv-hist", _weights(final))
        pred_sum: np.ndarray | None = sums["ltv-hist"].total
    else:
        pred = _release_phase(session, partners, cfg, "ltv-hist", final)
        pred_sum = np.sum(list(pred.values()), axis=0) if pred else None
    true_t, pred_t = _tier_thresholds(pooled.spend_hist, pred_sum, options)
    if pred_t is not None:
        cfg.update({"tier-true": list(true_t), "tier-pred": list(pred_t)})
    final_metrics: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    if options.evaluate:
        progress.report("final evaluation", options.rounds + 2, options.rounds + 3)
        if options.distributed:
            sums["evaluate"] = secure_server.release(session, cfg, "evaluate", _weights(final))
            final_metrics, noisy = secure_server.read_evaluation(sums["evaluate"], options, tiers=pred_t is not None)
        else:
            messages = [request("evaluate", session.task.name, n, {**cfg, "phase": "evaluate"}, arrays=final)
                        for n in strategy.evaluation_nodes()]
            replies = list(session.grid.send_and_receive(messages, timeout=session.job.timeout))
            accepted = session.guard.check(replies, "evaluate")
            final_metrics, noisy = read_evaluations(accepted, partners, tiers=pred_t is not None,
                                                    noise_multiplier=options.eval_noise_multiplier())
        curves = summary_curves(noisy) if noisy is not None else {}
        if previous is not None:
            old_metrics, old_curves = _evaluate_previous(session, strategy, partners, cfg, previous)

    weights = {k: v.numpy() for k, v in final.items()}
    bundle = ModelBundle(kind=options.model, features=FEATURES, weights=weights, scaler=scaler, target=target,
                         tier_thresholds=pred_t or (math.inf, math.inf),
                         config={**options.window.to_config(), **options.caps.to_config(), "job-id": session.job.job_id,
                                 "tier-true": list(true_t), **session.job.message_config()})
    artifacts = {}
    if session.job.out_dir:
        artifacts["model"] = str(write_model(Path(session.job.out_dir), bundle))
    summary = {
        "rounds": options.rounds, "seed": options.seed, "model": options.model,
        "privacy": privacy_summary(session, partners, dp, secure, sums),
        "metrics": {"federated": final_metrics, "per_round": strategy.log.per_round},
        "curves": {"federated": curves},
        "ltv_tiers": {"levels": [options.tier_mid, options.tier_high], "true_thresholds": list(true_t),
                      "predicted_thresholds": None if pred_t is None else list(pred_t)},
        # a DP job's partners send no timing (a side channel): only the coordinator's own clock then
        "timing": {"local_train_s": None if dp is not None else strategy.log.train_seconds,
                   **({} if secure is None else {"secagg_rounds_s": round(sum(r["secagg_s"] for r in secure.per_round),
                                                                          3)})},
    }
    if previous is not None:
        summary["metrics"][recalibrate.PREVIOUS] = old_metrics
        summary["curves"][recalibrate.PREVIOUS] = old_curves
        summary["recalibration"] = _recalibration(session, summary, previous, final_metrics, old_metrics,
                                                  curves, old_curves)
        if session.job.out_dir:
            artifacts["history"] = str(recalibrate.write_history(Path(session.job.out_dir),
                                                                 summary["recalibration"]["history"]))
    progress.report("done", options.rounds + 3, options.rounds + 3)
    return TaskResult(summary, artifacts)


def _evaluate_previous(session: Session, strategy: PropensityFedAvg, partners: dict[int, PartnerTrack],
                       cfg: dict[str, Any], previous: recalibrate.Previous) -> tuple[dict[str, Any], dict[str, Any]]:
    """The previous model, as it is, on the same newest held-out customers: one more DP evaluation release (in
    the plan's charge), so old and new calibration and tier accuracy are compared on one truth."""
    options: PropensityOptions = session.options  # type: ignore[assignment]
    old_cfg = {**cfg, "phase": "evaluate", **recalibrate.old_model_config(previous.bundle)}
    if options.distributed:  # one more SecAgg+ sum, like the new model's
        secure = secure_server.release(session, old_cfg, "evaluate", recalibrate.initial_weights(previous.bundle))
        metrics, noisy = secure_server.read_evaluation(secure, options,
                                                       tiers="tier-pred" in old_cfg and "tier-true" in old_cfg)
        return metrics, (summary_curves(noisy) if noisy is not None else {})
    arrays = _arrays(recalibrate.initial_weights(previous.bundle))
    messages = [request("evaluate", session.task.name, n, old_cfg, arrays=arrays) for n in strategy.evaluation_nodes()]
    replies = list(session.grid.send_and_receive(messages, timeout=session.job.timeout))
    accepted = session.guard.check(replies, "evaluate")
    metrics, noisy = read_evaluations(accepted, partners, tiers="tier-pred" in old_cfg and "tier-true" in old_cfg,
                                      noise_multiplier=options.eval_noise_multiplier())
    return metrics, (summary_curves(noisy) if noisy is not None else {})


def _recalibration(session: Session, summary: dict[str, Any], previous: recalibrate.Previous,
                   new: dict[str, Any], old: dict[str, Any], new_curves: dict[str, Any],
                   old_curves: dict[str, Any]) -> dict[str, Any]:
    """Drift in words, this quarter's charge and every partner's lifetime epsilon from the ledger, the history."""
    options: PropensityOptions = session.options  # type: ignore[assignment]
    charged = summary["privacy"].get("ledger_epsilon_charged_this_job")
    line = recalibrate.entry(job_id=session.job.job_id, folder=str(session.job.out_dir or ""), window=options.window,
                             source=previous.source, charged=charged, metrics=new, lifetime={})
    ledger = PrivacyLedger(session.job.ledger)
    try:
        history, lifetime = recalibrate.with_ledger([*previous.history, line], ledger,
                                                    sorted(info.partner_id for info in session.partners.values()))
    finally:
        ledger.engine.dispose()
    history[-1]["lifetime_epsilon"] = {pid: round(e, 6) for pid, e in lifetime.items()}
    quarters = [e.get("epsilon_charged") for e in history]
    drift = recalibrate.drift(old, new, previous.window, options.window, old_curves, new_curves)
    return {"from": previous.source, "drift": drift,
            "epsilon_this_quarter": history[-1]["epsilon_charged"], "lifetime_epsilon": history[-1]["lifetime_epsilon"],
            "lifetime_epsilon_max": max(lifetime.values(), default=0.0),
            "quarters_epsilon_sum": sum(float(q) for q in quarters if isinstance(q, int | float)),
            "history": history}


def privacy_summary(session: Session, partners: dict[int, PartnerTrack], dp: DpsgdPlan | None,
                    secure: secure_server.SecureTraining | None = None,
                    sums: dict[str, secure_server.SecureRelease] | None = None) -> dict[str, Any]:
    """Per-partner epsilon from the partners' own gates, checked against the coordinator's ledger charge; the noise
    and trust model of every release, and with distributed noise the SecAgg+ grid and how many shares each sum held.

    Under SecAgg+ no reply carries a partner's gate status (the masked vectors are all it sends): each partner's
    spend is then the ledger's charge, stated as such, and its own accountant is checked by the partner's ledger
    (the contract test compares the two), not here."""
    options: PropensityOptions = session.options  # type: ignore[assignment]
    partners_n = len(session.nodes)
    noise = None if dp is None else ("distributed-secagg" if options.distributed else "local")
    out: dict[str, Any] = {
        "epsilon_target": None if dp is None else options.epsilon, "delta": options.delta, "non_private": dp is None,
        "noise_model": None if dp is None else options.noise_model,
        "trust_model": distributed.trust_model(options, partners_n),
        "noise_scope": None if dp is None else (
            "every release (feature statistics, training, LTV histogram, evaluation): distributed, a SecAgg+ sum of "
            "the partners' noise shares" if options.distributed else "every release: local noise on each partner"),
        "release_noise": None if dp is None else {
            "feature statistics": noise, "training": noise, "LTV histogram": noise,
            **({"evaluation": noise} if options.eval_releases else {})},
        "refused": {p.partner_id: p.refused for p in partners.values() if p.refused},
        "failed": {p.partner_id: p.failed for p in partners.values() if p.failed},
    }
    if secure is not None:
        out["secagg"] = distributed.secagg_summary(options, secure.encoding, secure.contributors)
        out["secagg"]["releases"] = {name: r.as_dict() for name, r in (sums or {}).items()}
        out["secagg"]["contributors_min"] = min([out["secagg"]["contributors_min"],
                                                 *(r.contributors for r in (sums or {}).values())])
    charged = None if dp is None or session.plan is None else compose_epsilon([c.event for c in session.plan.charges],
                                                                              options.delta)
    if options.distributed and charged is not None:
        spent = {p.partner_id: charged for p in sorted(partners.values(), key=lambda t: t.partner_id)}
        out["epsilon_spent_source"] = ("the ledger's charge: under SecAgg+ a partner sends only masked vectors, so "
                                       "its own gate's figure stays in its own ledger")
    else:
        spent = {p.partner_id: p.epsilon_job for p in sorted(partners.values(), key=lambda t: t.partner_id)}
    out.update({"epsilon_spent": spent, "epsilon_spent_max": max(spent.values(), default=0.0)})
    if charged is None:
        return out
    completed = {p.partner_id for p in partners.values() if p.refused is None and p.failed is None}
    agree = all(e <= charged + 1e-6 for e in spent.values()) and all(
        abs(spent[pid] - charged) <= 1e-3 * max(1.0, charged) for pid in completed)
    out.update({"ledger_epsilon_charged_this_job": charged, "ledger_url": safe_url(session.job.ledger),
                "accountants_agree_with_ledger": None if options.distributed else bool(agree)})
    return out


def write_model(out: Path, bundle: ModelBundle) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    with atomic_output_file(path) as tmp:
        bundle.save(tmp)
    return path


__all__ = ["MODEL_FILE", "plan", "run"]

"""Coordinator side of uplift: the manifest and charge, FedAvg rounds, then the evaluation and policy releases.

Everything after training is post-processing of the partners' summed noisy counts: the Qini curve of each offer
(:mod:`fedinsight.models.qini`), how many more conversions targeting the top share brings than random targeting,
and the policy's (chosen offer x value tier) counts with 95 % intervals and small cells suppressed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from dp_accounting import dp_event
from flwr.app import Array, ArrayRecord, ConfigRecord

from fedinsight.core.errors import SecureAggregationError
from fedinsight.core.files import atomic_output_file
from fedinsight.federation import progress
from fedinsight.federation.manifest import PUBLIC, Manifest, Release
from fedinsight.federation.secagg import secagg_releases, secure_sum
from fedinsight.federation.task import Session
from fedinsight.models.qini import curve_from_bins
from fedinsight.models.uplift import ReleasedAverage, build_model, get_weights
from fedinsight.privacy.distributed_dp import MODULUS, decode_sum
from fedinsight.privacy.intervals import estimate
from fedinsight.privacy.ledger import dpsgd_event
from fedinsight.privacy.suppression import suppressed
from fedinsight.tasks.uplift import client, distributed, economics, policy
from fedinsight.tasks.uplift.features import FEATURES, NAMES
from fedinsight.tasks.uplift.options import SCORE_EDGES, UpliftOptions
from fedinsight.tasks.uplift.strategy import UpliftFedAvg

MODEL_FILE = "uplift_model.json"
TIERS = ("low", "mid", "high")


def training_releases(options: UpliftOptions, partners: int) -> list[Release]:
    """What a partner sends to train: local mode's weights after DP-SGD, or with distributed noise the whitening
    statistics and each round's masked clipped gradient sum (:mod:`.distributed`)."""
    plan = options.plan()
    if not options.distributed:
        shapes = {name: tuple(v.shape) for name, v in initial_weights(options).items()}
        return [
            Release("train", client.ARRAYS, shapes, "dp-sgd", kind="arrays", count=options.rounds,
                    what="the uplift model's weights after local DP-SGD steps",
                    sensitivity=f"per-customer gradient clipped to L2 {plan.max_grad_norm:g}, noise multiplier "
                                f"{plan.noise_multiplier:.4g}, Poisson sample rate {plan.sample_rate:g}",
                    event=dpsgd_event(plan.noise_multiplier, plan.sample_rate, plan.steps_per_round)),
            Release("train", client.METRICS, {"num-examples": None, "steps": None}, PUBLIC,
                    what="the partner's FedAvg weight and its step count",
                    reason="the weight is the constant 1 (no customer count is sent) and the steps are the job's")]
    enc = distributed.encoding(options, partners)  # refused here, before anyone computes, if no grid fits
    m = plan.gaussian_noise_multiplier
    whitening = Release(
        client.WHITENING, client.RECORD, {"gram": (distributed.gram_length(options),)}, "gaussian",
        event=dp_event.GaussianDpEvent(m),
        what="training customers per arm, the sum of their basis vectors and of their outer products (each vector "
             f"scaled to L2 <= {distributed.GRAM_CLIP:g}): the whitening of distributed-noise training",
        sensitivity=f"L2 {distributed.GRAM_SENSITIVITY:g} per customer (weights {distributed.GRAM_WEIGHTS[0]:g} / "
                    f"{distributed.GRAM_WEIGHTS[1]:g} / {distributed.GRAM_WEIGHTS[2]:.3g}); noise multiplier {m:.4g}")
    return [whitening, *secagg_releases(
        update_event=dpsgd_event(plan.noise_multiplier, 1.0, 1), count=options.rounds,
        mechanism=distributed.MECHANISM,
        what="the sum of the partner's training customers' clipped gradients of the whitened heads plus its "
             "discrete-Gaussian noise share, masked (one full-batch step per round)",
        sensitivity=f"customer-level L2 {plan.max_grad_norm:g} (C' = {enc.sensitivity:.6g} after rounding onto the "
                    f"SecAgg+ grid); noise multiplier {plan.noise_multiplier:.4g} on the sum of {enc.honest} shares")]


def manifest(options: UpliftOptions, task: str, partners: int = 0) -> Manifest:
    """Every value a partner sends in one uplift job (``partners``: the job's, for a distributed-noise grid)."""
    plan = options.plan()
    k = len(options.offers)
    m = plan.gaussian_noise_multiplier
    return Manifest(task, (
        *training_releases(options, partners),
        Release("evaluate", client.RECORD, {"qini": (client.eval_length(k),)}, "gaussian", event=dp_event.
                GaussianDpEvent(m),
                what=f"held-out customers per offer x (treated, control) x (customers, conversions) x "
                     f"{len(SCORE_EDGES) + 1} predicted-uplift bins (the Qini curves)",
                sensitivity=f"L2 sqrt(2 x {k}) per customer (a control customer counts in every offer's control "
                            f"cells, once as a customer and once as a conversion); noise multiplier {m:.4g}"),
        Release("policy", client.RECORD, {"policy": (client.policy_length(k),)}, "gaussian",
                event=dp_event.GaussianDpEvent(m),
                what="the campaign's customers per chosen offer (or none) x value tier",
                sensitivity=f"L2 1 per customer (one cell each); noise multiplier {m:.4g}"),
        Release("economics", client.RECORD, {"arms": (3 * len(options.arms),)}, "gaussian",
                event=dp_event.GaussianDpEvent(m),
                what="per arm over the campaign's audience: customers, converters, converters' usual order / "
                     "order-value-cap (the campaign economics)",
                sensitivity=f"L2 sqrt(3) per customer (one arm; 1 for being there, 1 for converting, at most 1 "
                            f"for its capped order value); noise multiplier {m:.4g}"),
    ))


def initial_weights(options: UpliftOptions) -> dict[str, np.ndarray]:
    return get_weights(build_model(len(FEATURES), len(options.arms), options.hidden, options.seed, options.knot_values,
                                   options.heads, options.basis))


def _arrays(weights: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v, dtype=np.float32)) for k, v in weights.items()})


def _summed(replies: dict[int, Any], key: str) -> np.ndarray:
    return np.sum([np.asarray(m.content[client.RECORD][key], dtype=float) for m in replies.values()], axis=0)


def qini_summary(counts: np.ndarray, options: UpliftOptions, partners: int = 1) -> dict[str, Any]:
    """Per offer: the Qini coefficient, the top share's incremental conversions against random targeting, and
    the curve's points (all post-processing of the summed counts), with the noise sd of each summed count."""
    bins = len(SCORE_EDGES) + 1
    sd = options.plan().gaussian_noise_multiplier * client.eval_sensitivity(len(options.offers)) * math.sqrt(partners)
    table = np.asarray(counts, dtype=float).reshape(len(options.offers), 4, bins)
    out: dict[str, Any] = {}
    for o, name in enumerate(options.offers):
        curve = curve_from_bins(*table[o])
        top = options.top_share
        out[name] = {"qini": curve.coefficient, "customers": curve.customers,
                     "incremental_conversions_top": curve.gain_at(top),
                     "incremental_conversions_random": top * float(curve.gain[-1]),
                     "top_vs_random": curve.targeting_ratio(top), "top_share": top, "cell_noise_sd": sd,
                     "curve": {"share": [round(float(v), 4) for v in curve.share],
                               "gain": [round(float(v), 2) for v in curve.gain]}}
    return out


def policy_summary(counts: np.ndarray, options: UpliftOptions, partners: int) -> dict[str, Any]:
    """The (offer x tier) table with 95 % intervals; cells under the minimum group size suppressed."""
    sd = options.plan().gaussian_noise_multiplier * math.sqrt(partners)
    names = [policy.NONE, *options.offers]
    hidden = suppressed(counts, options.min_group_size)
    cells = []
    for c, name in enumerate(names):
        for t, tier in enumerate(TIERS):
            i = c * 3 + t
            est = estimate(float(counts[i]), sd**2, lower=0.0)
            cells.append({"offer": name, "tier": tier, "suppressed": bool(hidden[i]),
                          "customers": None if hidden[i] else round(est.value, 1),
                          "ci95": None if hidden[i] else [round(est.ci95[0], 1), round(est.ci95[1], 1)]})
    return {"cells": cells, "noise_sd": sd, "tier_edges": list(options.tier_edges),
            "costs": options.costs, "order_value_cap": options.order_value_cap,
            "order_value_prior": options.prior_order_value, "order_value_weight": options.order_value_weight}


def run(session: Session) -> dict[str, Any]:
    """Training, then the two releases; returns the task's part of ``summary.json``."""
    options: UpliftOptions = session.options  # type: ignore[assignment]
    secure: dict[str, Any] | None = None
    if options.distributed:
        weights, secure = secure_training(session)
        final = _arrays(weights)
    else:
        initial = _arrays(initial_weights(options))
        cfg = session.config("train")
        strategy = UpliftFedAvg(session, options.rounds)
        result = strategy.start(session.grid, initial, num_rounds=options.rounds, timeout=session.job.timeout,
                                train_config=ConfigRecord(cfg))
        final = strategy.released(result.arrays if result.arrays is not None else initial)
    progress.report("evaluation", options.rounds, options.rounds + 2)
    qini = qini_summary(_summed(session.ask("query", "evaluate", config=session.config("evaluate"), arrays=final),
                                "qini"), options, len(session.nodes))
    progress.report("policy", options.rounds + 1, options.rounds + 2)
    pol = policy_summary(_summed(session.ask("query", "policy", config=session.config("policy"), arrays=final),
                                 "policy"), options, len(session.nodes))
    money = economics.summary(_summed(session.ask("query", "economics", config=session.config("economics"),
                                                  arrays=final), "arms"), options.offers, options.costs,
                              options.order_value_cap, options.plan().gaussian_noise_multiplier
                              * economics.SENSITIVITY * math.sqrt(len(session.nodes)), options.min_group_size)
    progress.report("done", options.rounds + 2, options.rounds + 2)
    plan = options.plan()
    return {"campaign": options.campaign, "control": options.control, "offers": list(options.offers),
            "features": list(NAMES), "rounds": options.rounds,
            "metrics": {"federated": qini}, "policy": pol, "economics": money,
            "noise": {"dpsgd_multiplier": plan.noise_multiplier, "release_multiplier": plan.gaussian_noise_multiplier,
                      "eval_sensitivity_l2": client.eval_sensitivity(len(options.offers)),
                      "noise_model": options.noise_model,
                      "trust_model": distributed.trust_model(options, len(session.nodes)),
                      **({"secagg": secure} if secure is not None else {})},
            "weights": {k: v.numpy().tolist() for k, v in final.items()}}


def secure_training(session: Session) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Distributed-noise training (:mod:`.distributed`): the whitening statistics (each partner's Gaussian release,
    summed), then ``rounds`` SecAgg+ sums of the partners' clipped gradient sums and noise shares, one step each; the
    released model is the average of ``--ema`` or ``--tail`` (as in local mode), converted to the ordinary model's
    weights (all post-processing)."""
    options: UpliftOptions = session.options  # type: ignore[assignment]
    partners = len(session.nodes)
    enc = distributed.encoding(options, partners)
    progress.report("whitening", 0, options.rounds + 3)
    gram = _summed(session.ask("query", client.WHITENING, config=session.config(client.WHITENING)), "gram")
    whitening = distributed.Whitening.from_gram(gram, options)
    vector = distributed.initial(options)
    average = ReleasedAverage(options.rounds, options.ema, options.tail)  # local mode's rule, on the whitened heads
    contributors: list[int] = []
    cfg = {**session.config(distributed.SECURE_PHASE), **whitening.as_config(), "secagg-partners": partners}
    for rnd in range(1, options.rounds + 1):
        try:
            mean, held = secure_sum(session.grid, session.guard, fit_config={**cfg, "server-round": rnd},
                                    settings=enc.flower_settings(), partners=partners,
                                    max_dropouts=options.max_dropouts, timeout=session.job.timeout,
                                    initial=[vector.astype(np.float64)])
        except SecureAggregationError as exc:
            raise SecureAggregationError(f"uplift round {rnd}: {exc}") from None
        vector = distributed.step(vector, decode_sum(mean[0], held, enc), whitening, options)
        average.add(rnd, {"heads": vector})
        contributors.append(held)
        progress.report("rounds", rnd, options.rounds, training_partners=held, partners=partners)
    assert average.value is not None  # rounds >= 1, and a tail holds the last round at least
    summary = {"partners": partners, "noise_shares": enc.honest, "max_dropouts": options.max_dropouts,
               "max_customers": enc.max_customers, "clipping_range": enc.clipping_range,
               "quantization_range": enc.quantization, "modulus_range": MODULUS, "grid_step": enc.step,
               "sensitivity": round(enc.sensitivity, 9),
               "noise_sd_of_the_sum": enc.sum_noise_std, "tau": enc.tau,
               "contributors_min": min(contributors), "rounds_unmasked": len(contributors),
               "whitening_floor": distributed.FLOOR, "noisy_training_customers": [round(float(v), 1)
                                                                                 for v in whitening.counts]}
    return distributed.to_model_weights(average.value["heads"], whitening, options), summary


def model(summary: dict[str, Any], options: UpliftOptions) -> dict[str, Any]:
    """The released model (public: DP-SGD output) and what a partner needs to apply the policy to its customers."""
    return {"kind": "fedinsight-uplift", "version": 1, "campaign": summary["campaign"], "arms": list(options.arms),
            "features": [{"name": n, "cap": c} for n, c in FEATURES], "hidden": options.hidden,
            "knots": list(options.knot_values), "heads": options.heads, "basis": options.basis,
            "costs": options.costs, "order_value_cap": options.order_value_cap,
            "order_value_prior": options.prior_order_value, "order_value_weight": options.order_value_weight,
            "tier_edges": list(options.tier_edges), "weights": summary["weights"]}


def write_model(out_dir: Path, summary: dict[str, Any], options: UpliftOptions) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    with atomic_output_file(path) as tmp:
        tmp.write_text(json.dumps(model(summary, options), indent=2) + "\n")
    return path

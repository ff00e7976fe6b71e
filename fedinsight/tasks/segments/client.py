"""The partner side of segments: ``query.segments`` phases ``histogram``, ``assign`` and ``sizes``.

The partner computes its customers' vectors itself (:mod:`.features`, through its data view: consent and
erasures applied), works out the noise from the job's public options *itself* (:func:`.kmeans.noise_plan`),
passes each release through its own budget gate, and adds OpenDP Gaussian noise
(:func:`fedinsight.privacy.mechanisms.gaussian`, OS entropy). Only noisy vectors leave; the centres it is sent
are the coordinator's post-processing of earlier noisy releases. Assignments of its customers stay here.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from flwr.app import Message, MetricRecord

from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.federation.messages import config_of, reply
from fedinsight.federation.task import Partner, phase_of
from fedinsight.privacy.mechanisms import gaussian
from fedinsight.tasks.segments import kmeans
from fedinsight.tasks.segments.customer_scan import engine_vectors
from fedinsight.tasks.segments.features import partner_zone
from fedinsight.tasks.segments.options import SegmentsOptions

RECORD = "release"


def vectors(partner: Partner, options: SegmentsOptions) -> np.ndarray:
    """This partner's customer vectors (consenting, non-erased customers with a purchase before as-of), computed by
    its engine: its transactions are never loaded whole into pandas (:mod:`.customer_scan`)."""
    if not options.as_of:
        raise ConfigError("segments needs --as-of (the reference date, e.g. 2026-01-01)")
    zone = partner_zone({"timezone": partner.timezone()})
    return engine_vectors(partner, options.as_of, options.names, zone).to_numpy()


def centres_of(config: dict[str, Any], options: SegmentsOptions) -> np.ndarray:
    """The centres the coordinator sent (public: post-processing of noisy releases), checked for shape."""
    try:
        centres = np.asarray(json.loads(str(config["centres"])), dtype=float)
    except (KeyError, ValueError, TypeError):
        raise ConfigError("a segments step needs the current centres") from None
    if centres.shape != (options.k, options.dim) or not np.all(np.isfinite(centres)):
        raise ConfigError(f"centres must be {options.k} x {options.dim} finite numbers")
    return centres


def query(msg: Message, partner: Partner) -> Message:
    """One noisy release: the grid histogram, a Lloyd step's counts and sums, or the final sizes."""
    config = config_of(msg)
    options = SegmentsOptions.from_run_config(config)
    plan = options.noise()
    phase = phase_of(msg)
    x = vectors(partner, options)
    if phase == "histogram":
        spend(partner, config, options, [plan.events()[0]], "segments: initial histogram")
        return reply(msg, **{RECORD: MetricRecord({"histogram": noisy_histogram(x, options).tolist()})})
    centres = centres_of(config, options)
    if phase == "assign":
        events = plan.events()[1:3]
        spend(partner, config, options, events, f"segments: Lloyd step {config.get('step', '?')}")
        counts, sums = noisy_stats(x, centres, options)
        return reply(msg, counts=MetricRecord({"counts": counts.tolist()}),
                     sums=MetricRecord({"sums": sums.ravel().tolist()}))
    if phase == "sizes":
        spend(partner, config, options, [plan.events()[-1]], "segments: final segment sizes")
        return reply(msg, **{RECORD: MetricRecord({"sizes": noisy_sizes(x, centres, options).tolist()})})
    raise ConfigError(f"unknown segments step '{phase}' (expected histogram, assign or sizes)")


def noisy_histogram(x: np.ndarray, options: SegmentsOptions) -> np.ndarray:
    """The grid histogram plus OpenDP Gaussian noise (L2 1: one cell per customer)."""
    return gaussian(kmeans.histogram(x, options.grid_size), 1.0, options.noise().init).values


def noisy_stats(x: np.ndarray, centres: np.ndarray, options: SegmentsOptions) -> tuple[np.ndarray, np.ndarray]:
    """One Lloyd step's per-cluster counts (L2 1) and vector sums (L2 sqrt(d)), each plus OpenDP Gaussian noise."""
    plan = options.noise()
    counts, sums = kmeans.cluster_stats(x, centres)
    noisy_sums = gaussian(sums.ravel(), options.sum_bound, plan.sums).values.reshape(sums.shape)
    return gaussian(counts, 1.0, plan.counts).values, noisy_sums


def noisy_sizes(x: np.ndarray, centres: np.ndarray, options: SegmentsOptions) -> np.ndarray:
    """Customers nearest each final centre, plus OpenDP Gaussian noise (L2 1)."""
    counts, _ = kmeans.cluster_stats(x, centres)
    return gaussian(counts, 1.0, options.noise().sizes).values


def spend(partner: Partner, config: dict[str, Any], options: SegmentsOptions, events: list[Any],
          description: str) -> None:
    partner.gate.spend(str(config["job-id"]), events, job_epsilon=options.epsilon, job_delta=options.delta,
                       kind="query", description=description)


def hello_facts(partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
    """No facts; but the partner checks here, before any budget is charged, that it can build its vectors, that
    it has at least one customer to segment (a partner without purchases would only add noise), and that the
    whole job fits its own cap."""
    options = SegmentsOptions.from_run_config(config)
    if not len(vectors(partner, options)):
        raise ConfigError(f"partner {partner.partner_id} has no customer with a purchase before {options.as_of} "
                          "(after consent and erasures): leave it out of the job or pick a later --as-of")
    refusal = partner.gate.binding(str(config["job-id"]), options.noise().events(), job_epsilon=options.epsilon,
                                   job_delta=options.delta)
    if refusal is not None:
        raise BudgetExceededError(refusal.reason + "; refused before the job started")
    return {}

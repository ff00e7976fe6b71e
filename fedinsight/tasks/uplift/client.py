"""The partner side of uplift: ``train.uplift`` (DP-SGD) and ``query.uplift`` phases ``evaluate`` and ``policy``.

The partner reads the campaign's audience through one scan of its engine (:mod:`.audience_scan`: consent and
erasures applied inside it; pandas holds one row per exposed customer), splits off its
held-out customers with its own key (:mod:`fedinsight.privacy.holdout`), works out the noise from the job's public
options itself (:meth:`.options.UpliftOptions.plan`), passes every release through its budget gate, and draws all
randomness (DP-SGD sampling and noise, OpenDP's Gaussian) from OS entropy. What leaves: model weights after DP-SGD, the
noisy (offer x arm x predicted-uplift bin) counts of its held-out customers, and the noisy (chosen offer x value
tier) counts of its policy. Scores, choices and order values stay here.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from dp_accounting import dp_event
from flwr.app import Array, ArrayRecord, Message, MetricRecord

from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.federation.messages import config_of, reply
from fedinsight.federation.task import Partner, phase_of
from fedinsight.models.qini import bin_counts
from fedinsight.models.uplift import UpliftNet, predicted_uplift, set_weights, tensors, uplift_loss
from fedinsight.privacy.dpsgd import train_dpsgd
from fedinsight.privacy.holdout import DEFAULT_TEST_SHARE, holdout_key, holdout_mask, partner_share
from fedinsight.privacy.ledger import dpsgd_event
from fedinsight.privacy.mechanisms import gaussian
from fedinsight.tasks.uplift import economics, policy
from fedinsight.tasks.uplift.audience_scan import engine_audience
from fedinsight.tasks.uplift.features import FEATURES, Audience
from fedinsight.tasks.uplift.options import HOLDOUT_KEY, SCORE_EDGES, UpliftOptions

ARRAYS = "arrays"
METRICS = "metrics"
RECORD = "release"
WHITENING = "whitening"
"""The query phase of the whitening statistics (distributed noise only; :mod:`.distributed`)."""


def eval_length(offers: int) -> int:
    """Length of the evaluation release: per offer, (treated n, treated conversions, control n, control
    conversions) x score bins."""
    return offers * 4 * (len(SCORE_EDGES) + 1)


def eval_sensitivity(offers: int) -> float:
    """L2 per customer: a control customer sits in every offer's control (n, conversion) cells: sqrt(2 x offers)."""
    return math.sqrt(2.0 * offers)


def policy_length(offers: int) -> int:
    return (offers + 1) * 3


@dataclass(frozen=True)
class Split:
    train: Audience
    test: Audience
    everyone: Audience


_SPLITS: OrderedDict[tuple[Any, ...], Split] = OrderedDict()


def prepare(partner: Partner, options: UpliftOptions, job_id: str) -> Split:
    """The partner's audience for the job and its held-out split (cached per job: a node serves every round)."""
    share = partner_share(partner.setting("test-share", DEFAULT_TEST_SHARE))
    key = (partner.partner_id, job_id, options.campaign, options.arms, share)
    if key not in _SPLITS:
        who = engine_audience(partner, options.campaign, options.arms)
        test = holdout_mask(who.ids, share, holdout_key(partner.vault, HOLDOUT_KEY))
        _SPLITS[key] = Split(who.take(~test), who.take(test), who)
        while len(_SPLITS) > 8:
            _SPLITS.popitem(last=False)
    return _SPLITS[key]


def events(options: UpliftOptions) -> list[dp_event.DpEvent]:
    """One partner's releases in one job: each round's DP-SGD steps (with distributed noise: one full-batch step),
    and the Gaussian releases (evaluation, policy, economics; with distributed noise the whitening statistics)."""
    plan = options.plan()
    return ([dpsgd_event(plan.noise_multiplier, plan.sample_rate, plan.steps_per_round)] * options.rounds
            + [plan.gaussian_event()] * options.gaussian_releases)


def hello_facts(partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
    """No facts; the partner checks here, before any budget is charged, that its campaign data serves the job
    (every arm exposed, a training and a held-out customer) and that the whole job fits its own cap."""
    options = UpliftOptions.from_run_config(config)
    split = prepare(partner, options, str(config["job-id"]))
    if not len(split.train) or not len(split.test):
        raise ConfigError(f"campaign '{options.campaign}' has too few exposed customers at partner "
                          f"{partner.partner_id} to train and evaluate")
    if options.distributed:
        check_before_charge(partner, options, config, len(split.train))
    refusal = partner.gate.binding(str(config["job-id"]), events(options), job_epsilon=options.epsilon,
                                   job_delta=options.delta)
    if refusal is not None:
        raise BudgetExceededError(refusal.reason + "; refused before the job started")
    return {}


def check_before_charge(partner: Partner, options: UpliftOptions, config: dict[str, Any], training: int) -> None:
    """In hello, before anyone is charged: the grid fits, this partner accepts the trust model, and its training
    customers fit under the public bound (a SecAgg+ round cannot go on without one of its partners)."""
    from fedinsight.federation.secagg import check_partner_fits
    from fedinsight.tasks.uplift import distributed

    try:
        partners = int(config["secagg-partners"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError("a distributed-noise uplift job lacks its partner count (secagg-partners)") from None
    distributed.encoding(options, partners)
    check_partner_fits(partner, assumed_honest=options.honest_partners or partners, customers=training,
                       max_customers=options.max_customers)


def _model(msg: Message, options: UpliftOptions) -> UpliftNet:
    arrays: ArrayRecord = msg.content[ARRAYS]  # type: ignore[assignment]
    return set_weights(UpliftNet(len(FEATURES), len(options.arms), options.hidden, options.knot_values,
                                 options.heads, options.basis),  # type: ignore[return-value]
                       {k: v.numpy() for k, v in arrays.items()})


def _spend(partner: Partner, config: dict[str, Any], options: UpliftOptions, evs: list[Any], kind: str,
           description: str) -> None:
    partner.gate.spend(str(config["job-id"]), evs, job_epsilon=options.epsilon, job_delta=options.delta, kind=kind,
                       description=description)


def train(msg: Message, partner: Partner) -> Message:
    """Local DP-SGD steps from the global weights on the training customers; reply with the new weights."""
    config = config_of(msg)
    options = UpliftOptions.from_run_config(config)
    plan = options.plan()
    split = prepare(partner, options, str(config["job-id"]))
    _spend(partner, config, options, [dpsgd_event(plan.noise_multiplier, plan.sample_rate, plan.steps_per_round)],
           "training", f"uplift DP-SGD round {config.get('server-round', '?')}: {plan.steps_per_round} steps")
    trained = local_update(_model(msg, options), split.train, options)
    arrays = ArrayRecord({k: Array(v.detach().cpu().numpy()) for k, v in trained.state_dict().items()})
    # every partner weighs 1 in FedAvg: an exact customer count would be a release of its own
    return reply(msg, **{ARRAYS: arrays, METRICS: MetricRecord({"num-examples": 1.0,
                                                                 "steps": plan.steps_per_round})})


def local_update(model: UpliftNet, train_set: Audience, options: UpliftOptions) -> UpliftNet:
    """One round's DP-SGD steps (Opacus; sampling and noise from OS entropy) on the training customers."""
    plan = options.plan()
    data = tensors(train_set.x, train_set.arm, train_set.converted)
    trained, _ = train_dpsgd(model, data, uplift_loss, noise_multiplier=plan.noise_multiplier,
                             sample_rate=plan.sample_rate, steps=plan.steps_per_round,
                             max_grad_norm=plan.max_grad_norm, lr=options.lr, momentum=options.momentum)
    return trained  # type: ignore[return-value]


def evaluation_counts(model: UpliftNet, test: Audience, offers: int) -> np.ndarray:
    """Exact (offer, row, bin) counts on held-out customers, flattened: for offer o, its arm's customers against
    the control's, binned by the predicted uplift of o (highest bin first)."""
    uplift = predicted_uplift(model, test.x)
    parts = []
    for o in range(offers):
        keep = (test.arm == 0) | (test.arm == o + 1)
        parts.append(bin_counts(uplift[keep, o], test.arm[keep] == o + 1, test.converted[keep],
                                np.asarray(SCORE_EDGES)).ravel())
    return np.concatenate(parts)


def policy_counts(model: UpliftNet, who: Audience, options: UpliftOptions) -> np.ndarray:
    """Exact (chosen offer x value tier) counts over the partner's audience."""
    costs = np.asarray([options.costs[o] for o in options.offers])
    choice = policy.choose(predicted_uplift(model, who.x), options.expected_order_value(who), costs)
    return policy.counts(choice, policy.tiers(who.spend_year, options.tier_edges), len(options.offers))


def query(msg: Message, partner: Partner) -> Message:
    """``evaluate``: the noisy evaluation counts; ``policy``: the noisy policy counts; ``economics``: the noisy
    per-arm totals (each one Gaussian release)."""
    config = config_of(msg)
    options = UpliftOptions.from_run_config(config)
    plan = options.plan()
    phase = phase_of(msg)
    split = prepare(partner, options, str(config["job-id"]))
    if phase == WHITENING:  # before any model exists: no arrays in this message
        from fedinsight.tasks.uplift import distributed

        if not options.distributed:
            raise ConfigError("this job was not planned with --noise-model distributed-secagg: no whitening release")
        _spend(partner, config, options, [plan.gaussian_event()], "stats",
               f"uplift whitening statistics: Gaussian, multiplier {plan.gaussian_noise_multiplier:.4g}")
        noisy = gaussian(distributed.gram_vector(split.train.x, split.train.arm, options),
                         distributed.GRAM_SENSITIVITY, plan.gaussian_noise_multiplier).values
        return reply(msg, **{RECORD: MetricRecord({"gram": noisy.tolist()})})
    model = _model(msg, options)
    k = len(options.offers)
    if phase == "evaluate":
        _spend(partner, config, options, [plan.gaussian_event()], "evaluation",
               f"uplift evaluation: Gaussian, multiplier {plan.gaussian_noise_multiplier:.4g}")
        noisy = gaussian(evaluation_counts(model, split.test, k), eval_sensitivity(k),
                         plan.gaussian_noise_multiplier).values
        return reply(msg, **{RECORD: MetricRecord({"qini": noisy.tolist()})})
    if phase == "policy":
        _spend(partner, config, options, [plan.gaussian_event()], "query",
               f"uplift policy counts: Gaussian, multiplier {plan.gaussian_noise_multiplier:.4g}")
        noisy = gaussian(policy_counts(model, split.everyone, options), 1.0, plan.gaussian_noise_multiplier).values
        return reply(msg, **{RECORD: MetricRecord({"policy": noisy.tolist()})})
    if phase == "economics":
        _spend(partner, config, options, [plan.gaussian_event()], "query",
               f"uplift campaign economics: Gaussian, multiplier {plan.gaussian_noise_multiplier:.4g}")
        totals = economics.arm_totals(split.everyone, len(options.arms), options.order_value_cap)
        noisy = gaussian(totals, economics.SENSITIVITY, plan.gaussian_noise_multiplier).values
        return reply(msg, **{RECORD: MetricRecord({"arms": noisy.tolist()})})
    raise ConfigError(f"unknown uplift step '{phase}' (expected evaluate, policy or economics"
                      + (f", or {WHITENING}" if options.distributed else "") + ")")

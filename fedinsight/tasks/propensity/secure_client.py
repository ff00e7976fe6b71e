"""Partner side of distributed-noise propensity training: one full-batch step per SecAgg+ round.

Flower 1.41 runs SecAgg+ only on its legacy path, so a round arrives as a plain ``train`` message handled by
the partner's one legacy train handler (:mod:`fedinsight.federation.secagg`) under ``secaggplus_mod``, which
hands fit configs with ``task = propensity`` to :func:`secure_fit`. What the partner sends: the sum of its
training customers' gradients, each clipped to the job's norm (Opacus per-sample gradients), plus *its share*
of the discrete-Gaussian noise drawn by OpenDP from OS entropy, masked by SecAgg+; no metrics, weight 1. It
never sends anything unmasked.

The partner does not take the coordinator's word for the protocol: it derives the noise plan and the grid
from the job's public options and partner count (:mod:`.distributed`), checks SecAgg+'s own state against them
(:func:`~fedinsight.federation.secagg.check_secagg_setup`), refuses a trust model it does not accept
(``max-honest-partners``), spends the round at its own budget gate before any share exists, and leaves the
drop-out guard its tolerance, so that a sum that lost more noise shares than tolerated is never unmasked.

The job's other releases (feature statistics, predicted-LTV histogram, held-out evaluation) travel the same way in
a distributed-noise job (:func:`secure_release`, phase ``secagg-<release>``): the partner's exact vector plus its
discrete-Gaussian share of the release's noise, masked. No per-partner suppression: no per-partner value leaves,
and the coordinator withholds a pooled evaluation whose *noisy* held-out count is below the minimum.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from dp_accounting import dp_event
from flwr.app import ConfigRecord

from fedinsight.core.errors import BudgetExceededError, ConfigError, SecureAggregationError
from fedinsight.federation.secagg import (
    GUARD_RECORD,
    check_own_trust,
    check_partner_fits,
    check_secagg_setup,
    check_share_round,
    from_legacy_config,
)
from fedinsight.federation.task import Partner
from fedinsight.models.propensity import (
    PropensityNet,
    SharedScaler,
    TargetScaler,
    propensity_loss,
    set_weights,
    tensors,
)
from fedinsight.privacy.distributed_dp import encode_noisy_share
from fedinsight.privacy.dpsgd import clipped_gradient_sum
from fedinsight.privacy.ledger import dpsgd_event
from fedinsight.tasks.propensity import distributed
from fedinsight.tasks.propensity.client import exact_vector, prepare
from fedinsight.tasks.propensity.features import FEATURES, unit_spend
from fedinsight.tasks.propensity.options import PropensityOptions
from fedinsight.tasks.propensity.protocol import MIN_EVAL_CUSTOMERS


def check_own_floor(partner: Partner, options: PropensityOptions) -> None:
    """Refuse a job that evaluates under a smaller minimum than this partner's own ``min-eval-customers``.

    Why refuse rather than ask the coordinator to honour the larger floor: with distributed noise the pooled
    evaluation is withheld (or not) by the coordinator, on the SecAgg+ sum, a decision this partner cannot check;
    its own floor would have to travel to the coordinator and be trusted there. Refusing is enforced here, before
    anything is charged, and says only what the error says. A job without evaluation has nothing to hold to it."""
    own = int(partner.setting("min-eval-customers", 0) or 0)
    job = max(MIN_EVAL_CUSTOMERS, options.min_eval_customers)
    if options.eval_releases and own > job:
        raise ConfigError(f"partner {partner.partner_id}: its own min-eval-customers {own} is above the job's minimum "
                          f"{job}; with distributed noise the pooled evaluation is withheld only below the job's "
                          f"minimum, so this partner refuses. Run the job with --min-eval-customers {own} or higher "
                          "(or --no-evaluate). Nothing was charged.")


def check_before_charge(partner: Partner, options: PropensityOptions, config: dict[str, Any]) -> None:
    """In hello, before the coordinator charges anyone: this partner accepts the trust model and the evaluation
    minimum (:func:`check_own_floor`), fits under the public customer bound, and can afford the whole job (a SecAgg+
    round cannot go on without one of its partners)."""
    check_own_floor(partner, options)
    partners = int(config["secagg-partners"])
    distributed.encoding(options, partners)  # the grids fit: training's and every other release's
    for release in distributed.RELEASES:
        if release != "evaluate" or options.eval_releases:
            distributed.release_encoding(options, partners, release)
    job_id = str(config.get("job-id", ""))
    split = prepare(partner, options, job_id)
    customers = max(len(split.buys_train), len(split.buys_test) if options.eval_releases else 0)
    check_partner_fits(partner, assumed_honest=options.honest_partners or partners, customers=customers,
                       max_customers=options.max_customers)
    dp = options.plan()
    assert dp is not None  # distributed jobs are private (options.validate)
    events = [*dp.events()]
    if options.eval_releases:
        from fedinsight.tasks.propensity.evaluation import eval_event

        events += [eval_event(options.eval_noise_multiplier())] * options.eval_releases  # type: ignore[arg-type]
    refusal = partner.gate.binding(job_id, events, job_epsilon=options.epsilon, job_delta=options.delta)
    if refusal is not None:
        raise BudgetExceededError(refusal.reason + "; refused before the job started")


def _model(parameters: list[np.ndarray], options: PropensityOptions) -> PropensityNet:
    if len(parameters) != 1:
        raise ConfigError(f"a distributed-noise propensity round carries one flat weight vector, got {len(parameters)}")
    return set_weights(PropensityNet(len(FEATURES), options.model), distributed.unflatten(parameters[0], options))


def _secure_options(config: dict[str, Any]) -> tuple[PropensityOptions, int]:
    options = PropensityOptions.from_run_config(config)
    if not options.distributed:
        raise ConfigError("this job was not planned with --noise-model distributed-secagg; nothing released")
    try:
        partners = int(config["secagg-partners"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError("a distributed-noise propensity round lacks its partner count (secagg-partners)") from None
    return options, partners


def secure_fit(partner: Partner, parameters: list[np.ndarray], config: dict[str, Any]
               ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """This partner's clipped gradient sum plus its noise share, for SecAgg+ to mask (or, in a ``secagg-<release>``
    phase, its statistics / histogram / evaluation vector plus its share: :func:`secure_release`)."""
    config = from_legacy_config(config)
    release = distributed.release_of(str(config.get("phase")))
    if release is not None:
        return secure_release(partner, parameters, config, release)
    if config.get("phase") != distributed.SECURE_PHASE:
        phases = ", ".join([distributed.SECURE_PHASE, *map(distributed.release_phase, distributed.RELEASES)])
        raise ConfigError(f"unknown propensity secure step '{config.get('phase')}' (expected one of {phases})")
    options, partners = _secure_options(config)
    enc = distributed.encoding(options, partners)
    job_id = str(config["job-id"])
    split = prepare(partner, options, job_id)
    check_share_round(partner, enc, honest=options.honest_partners, max_dropouts=options.max_dropouts,
                      customers=len(split.buys_train))
    model = _model(parameters, options)
    try:  # read before the spend: a malformed round costs the partner nothing
        scaler = SharedScaler(tuple(config["scaler-mean"]), tuple(config["scaler-std"]))
        target = TargetScaler(float(config["target-mean"]), float(config["target-std"]))
    except (KeyError, TypeError, ValueError):
        raise ConfigError("a distributed-noise propensity round lacks its public feature and target scales") from None
    dp = options.plan()
    assert dp is not None
    rnd = config.get("server-round", "?")
    partner.gate.spend(job_id, [dpsgd_event(dp.noise_multiplier, 1.0, 1)], job_epsilon=options.epsilon,
                       job_delta=options.delta, kind="training",
                       description=f"propensity round {rnd} ({distributed.MECHANISM}): full-batch DP-SGD step, noise "
                                   f"{dp.noise_multiplier:.4g} on the sum, clip {dp.max_grad_norm:g}; "
                                   + distributed.trust_model(options, partners))
    data = tensors(scaler.transform(split.unit_train), split.buys_train,
                   target.transform(unit_spend(split.spend_train, options.caps)))
    total = clipped_gradient_sum(model, data, propensity_loss, max_grad_norm=dp.max_grad_norm).numpy()
    share = encode_noisy_share(total, enc)  # OpenDP's discrete Gaussian: OS entropy, never a job seed
    partner.context.state.config_records[GUARD_RECORD] = ConfigRecord({"max-dropouts": options.max_dropouts,
                                                                       "partners": partners})
    return [share], 1, {}


def secure_release(partner: Partner, parameters: list[np.ndarray], config: dict[str, Any], release: str
                   ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """One statistics, LTV-histogram or evaluation release under SecAgg+: the exact vector (the same one local mode
    noises) plus this partner's discrete-Gaussian share, spent at the partner's gate before the share exists."""
    options, partners = _secure_options(config)
    enc = distributed.release_encoding(options, partners, release)
    check_own_trust(partner, options.honest_partners or partners)
    check_secagg_setup(partner.context, enc.flower_settings(), partners, options.max_dropouts)
    if release == "evaluate":  # again here: the partner does not rely on the coordinator having run hello
        check_own_floor(partner, options)
    job_id = str(config["job-id"])
    split = prepare(partner, options, job_id)
    customers = len(split.buys_test) if release == "evaluate" else len(split.buys_train)
    if customers > enc.max_customers:
        raise SecureAggregationError(f"this partner has more customers than the job's public bound --max-customers "
                                     f"{enc.max_customers}; refused (raise the bound)")
    model = None if release == "stats" else _model(parameters, options)
    try:  # read everything before the spend: a malformed round costs the partner nothing
        vector = exact_vector(release, split, options, config, model)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"a distributed-noise propensity {release} release lacks its public settings") from None
    partner.gate.spend(job_id, [dp_event.GaussianDpEvent(enc.noise_multiplier)], job_epsilon=options.epsilon,
                       job_delta=options.delta, kind="evaluation" if release == "evaluate" else "stats",
                       description=f"propensity {release} ({distributed.RELEASE_MECHANISM}): Gaussian multiplier "
                                   f"{enc.noise_multiplier:.4g} on the sum, L2 {enc.clip:g}; "
                                   + distributed.trust_model(options, partners))
    share = encode_noisy_share(vector, enc)  # OpenDP's discrete Gaussian: OS entropy, never a job seed
    partner.context.state.config_records[GUARD_RECORD] = ConfigRecord({"max-dropouts": options.max_dropouts,
                                                                       "partners": partners})
    return [share], 1, {}

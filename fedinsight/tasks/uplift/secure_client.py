"""Partner side of distributed-noise uplift training: one clipped gradient sum per SecAgg+ round, masked.

Flower 1.41 runs SecAgg+ only on its legacy path, so a round arrives as a plain ``train`` message handled by the
partner's one legacy train handler (:mod:`fedinsight.federation.secagg`) under ``secaggplus_mod``, which hands fit
configs with ``task = uplift`` to :func:`secure_fit`. What the partner sends: the sum of its training customers'
gradients of the whitened heads' log loss, each clipped to the job's norm, plus *its share* of the discrete-Gaussian
noise (OpenDP, OS entropy), masked by SecAgg+; no metrics, weight 1. It never sends it unmasked.

The partner does not take the coordinator's word for the protocol: it derives the grid and its noise share from the
job's public options and partner count (:mod:`.distributed`), checks SecAgg+'s own settings against them, refuses a
trust model it does not accept (``max-honest-partners``), and spends the round at its own budget gate before the
share exists. Clipping happens after the whitening the coordinator sends, so a customer's influence on the sum stays
within the clipping norm whatever the matrix; the partner only refuses, before its spend, a whitening or weights past
the public bound that keeps the arithmetic finite (:data:`.distributed.MAX_ENTRY`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import ConfigRecord

from fedinsight.core.errors import ConfigError
from fedinsight.federation.secagg import GUARD_RECORD, check_share_round, from_legacy_config
from fedinsight.federation.task import Partner
from fedinsight.privacy.distributed_dp import encode_noisy_share
from fedinsight.privacy.ledger import dpsgd_event
from fedinsight.tasks.uplift import distributed
from fedinsight.tasks.uplift.client import prepare
from fedinsight.tasks.uplift.options import UpliftOptions


def secure_fit(partner: Partner, parameters: list[np.ndarray], config: dict[str, Any]
               ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """This partner's clipped gradient sum of the whitened heads plus its noise share, for SecAgg+ to mask."""
    config = from_legacy_config(config)
    if config.get("phase") != distributed.SECURE_PHASE:
        raise ConfigError(f"unknown uplift secure step '{config.get('phase')}' (expected {distributed.SECURE_PHASE})")
    options = UpliftOptions.from_run_config(config)
    if not options.distributed:
        raise ConfigError("this job was not planned with --noise-model distributed-secagg; nothing released")
    try:
        partners = int(config["secagg-partners"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError("a distributed-noise uplift round lacks its partner count (secagg-partners)") from None
    enc = distributed.encoding(options, partners)
    job_id = str(config["job-id"])
    split = prepare(partner, options, job_id)
    check_share_round(partner, enc, honest=options.honest_partners, max_dropouts=options.max_dropouts,
                      customers=len(split.train))
    if len(parameters) != 1:
        raise ConfigError(f"a distributed-noise uplift round carries one flat weight vector, got {len(parameters)}")
    vector = np.asarray(parameters[0], dtype=np.float64)
    distributed.heads(vector, options)  # read everything before the spend: a malformed round costs nothing
    whitening = distributed.Whitening.from_config(config, options)
    plan = options.plan()
    partner.gate.spend(job_id, [dpsgd_event(plan.noise_multiplier, 1.0, 1)], job_epsilon=options.epsilon,
                       job_delta=options.delta, kind="training",
                       description=f"uplift round {config.get('server-round', '?')} ({distributed.MECHANISM}): "
                                   f"full-batch step, noise {plan.noise_multiplier:.4g} on the sum, clip "
                                   f"{plan.max_grad_norm:g}; " + distributed.trust_model(options, partners))
    total = distributed.gradient_sum(vector, whitening, split.train.x, split.train.arm, split.train.converted, options)
    share = encode_noisy_share(total, enc)  # OpenDP's discrete Gaussian: OS entropy, never a job seed
    partner.context.state.config_records[GUARD_RECORD] = ConfigRecord({"max-dropouts": options.max_dropouts,
                                                                       "partners": partners})
    return [share], 1, {}

"""Partner side of the recommender's distributed-noise rounds (SecAgg+, ``noise-model = distributed-secagg``).

Flower 1.41 runs SecAgg+ only on its legacy path, so these rounds arrive as plain ``train`` messages
handled by the partner's one legacy train handler (:mod:`fedinsight.federation.secagg`) under
``secaggplus_mod``, which hands fit configs with ``task = recommend`` to :func:`secure_fit`. What the
partner sends: its clipped item-table gradient sum plus *its share* of the noise
(:mod:`fedinsight.privacy.distributed_dp`), masked by SecAgg+; no metrics, weight 1.

The partner does not take the coordinator's word for the protocol: before releasing a share it checks
that SecAgg+ was set up with exactly the quantisation its accounting assumes and with every partner
of the job in the sum (:func:`~fedinsight.federation.secagg.check_secagg_setup`, shared by every task), and
:func:`~fedinsight.federation.secagg.dropout_guard_mod` refuses to hand over its unmasking shares when
more partners dropped out than the job tolerates — a sum that lost noise shares is never unmasked.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from flwr.app import ConfigRecord

from fedinsight.core.errors import ConfigError, SecureAggregationError
from fedinsight.federation.secagg import (
    GUARD_RECORD,
    check_own_trust,
    check_secagg_setup,
    check_shares,
    from_legacy_config,
)
from fedinsight.federation.task import Partner
from fedinsight.models.recommender import ItemParams
from fedinsight.privacy.distributed_dp import DistributedNoise, encode_noisy_share
from fedinsight.tasks.recommend.client import (
    _load_or_new_state,
    bpr_config,
    partner_split,
    partner_trainer,
    save_customer_state,
    spend,
)


def encoding_for(config: dict[str, Any]) -> DistributedNoise:
    return DistributedNoise.from_config(config, float(config["noise-multiplier"]), float(config.get("clip", 1.0)))


def secure_fit(partner: Partner, parameters: list[np.ndarray], config: dict[str, Any]
               ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """One distributed-noise round: clipped gradient sum + this partner's noise share, for SecAgg+ to mask."""
    config = from_legacy_config(config)
    if not math.isfinite(float(config.get("epsilon", math.inf))):
        raise ConfigError("distributed-noise rounds belong to private jobs only")
    context = partner.context
    enc = encoding_for(config)
    max_dropouts = int(config.get("max-dropouts", 0))
    check_own_trust(partner, check_shares(enc.partners, enc.honest, max_dropouts))  # the shares survive the drop-outs
    check_secagg_setup(context, enc.flower_settings(), enc.partners, max_dropouts)
    split, catalogue = partner_split(partner, config)
    if split.num_customers > enc.max_customers:
        raise SecureAggregationError(f"this partner has {split.num_customers} customers, more than the job's public "
                                     f"bound {enc.max_customers}; refused")
    items = ItemParams.from_matrix(np.asarray(parameters[0]))
    if items.num_items != catalogue.num_items:
        raise ConfigError(f"item table has {items.num_items} rows for a catalogue of {catalogue.num_items} items")
    cfg = bpr_config(config)
    name, state = _load_or_new_state(partner, config, split)
    spend(partner, config, enc.noise_multiplier, 1.0, 1, f"distributed-noise round {config.get('round', '?')}")
    trainer = partner_trainer(split, catalogue.num_items, cfg, state.embeddings)  # OS entropy: see partner_trainer
    total, _ = trainer.clipped_item_sum(items, enc.clip)
    share = encode_noisy_share(total, enc).reshape(total.shape)
    assert trainer.customer_embeddings is not None
    state.embeddings = trainer.customer_embeddings
    state.rounds += 1
    state.accountant.step(enc.noise_multiplier, 1.0, 1)
    save_customer_state(partner.vault, name, state)
    context.state.config_records[GUARD_RECORD] = ConfigRecord({"max-dropouts": max_dropouts,
                                                               "partners": enc.partners})
    return [share], 1, {}

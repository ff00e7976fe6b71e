"""Partner side of the recommender's distributed-noise rounds (SecAgg+, ``noise-model = distributed-secagg``).

Flower 1.41 runs SecAgg+ only on its legacy path, so these rounds arrive as plain ``train`` messages
handled by :mod:`fedinsight.client.secagg` under ``secaggplus_mod``; its NumPyClient hands fit
configs with ``secagg-task = recommend`` to :func:`secure_fit`. What the partner sends: its clipped item-table
gradient sum plus *its share* of the noise (:mod:`fedinsight.privacy.distributed_dp`), masked by
SecAgg+; no metrics, weight 1.

The partner does not take the coordinator's word for the protocol: before releasing a share it checks
that SecAgg+ was set up with exactly the quantisation its accounting assumes and with every partner
of the job in the sum, and :func:`dropout_guard_mod` refuses to hand over its unmasking shares when
more partners dropped out than the job tolerates — a sum that lost noise shares is never unmasked.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Error, Message
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE, Key, Stage

from fedinsight.errors import ConfigError, SecureAggregationError
from fedinsight.privacy.distributed_dp import MODULUS, DistributedNoise, encode_noisy_share

GUARD_RECORD = "fedinsight.recommend-secagg"
GUARD_ERROR_CODE = 3002


def to_legacy_config(config: dict[str, Any]) -> dict[str, Any]:
    """Legacy fit configs hold scalars only: list values travel as JSON strings (``<key>-json``)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, list):
            out[f"{key}-json"] = json.dumps(value)
        else:
            out[key] = value
    return out


def from_legacy_config(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key.endswith("-json") and isinstance(value, str):
            out[key[: -len("-json")]] = json.loads(value)
        else:
            out[key] = value
    return out


def encoding_for(config: dict[str, Any]) -> DistributedNoise:
    return DistributedNoise.from_config(config, float(config["noise-multiplier"]), float(config.get("clip", 1.0)))


def check_protocol(context: Context, enc: DistributedNoise, max_dropouts: int) -> None:
    """Refuse unless SecAgg+ was set up as the job's accounting assumes (read from ``secaggplus_mod``'s state)."""
    if RECORD_KEY_STATE not in context.state.config_records:
        raise SecureAggregationError("a distributed-noise round arrived outside SecAgg+; refused")
    state = context.state.config_records[RECORD_KEY_STATE]
    expected = enc.flower_settings()
    got = {"clipping_range": float(state.get("clipping_range", 0.0)),  # type: ignore[arg-type]
           "quantization_range": int(state.get("target_range", 0)),  # type: ignore[arg-type]
           "modulus_range": int(state.get("mod_range", 0))}  # type: ignore[arg-type]
    if got != {"clipping_range": float(expected["clipping_range"]),
               "quantization_range": int(expected["quantization_range"]), "modulus_range": MODULUS}:
        raise SecureAggregationError(f"SecAgg+ is set up with {got}, the job's encoding needs {expected}; refused")
    if float(state.get("max_weight", 0.0)) != 1.0:  # type: ignore[arg-type]
        raise SecureAggregationError("SecAgg+ max-weight must be 1 (the weight would rescale the noisy share)")
    sampled, shares = int(state.get("sample_num", 0)), int(state.get("share_num", 0))  # type: ignore[arg-type]
    if sampled < enc.partners - max_dropouts:
        raise SecureAggregationError(f"only {sampled} of the job's {enc.partners} partners are in this round; "
                                     f"at most {max_dropouts} may be missing; refused")
    if shares < sampled:
        raise SecureAggregationError("every partner must share keys with every other (num_shares = all) so that "
                                     "each one sees every drop-out; refused")


def secure_fit(context: Context, parameters: list[np.ndarray], config: dict[str, Any]
               ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """One distributed-noise round: clipped gradient sum + this partner's noise share, for SecAgg+ to mask."""
    from fedinsight.client.recommend import (
        _check_budget,
        _load_or_new_state,
        bpr_config,
        partner_split,
        save_customer_state,
        vault_for,
    )
    from fedinsight.client.recommend import _round_seed as round_seed
    from fedinsight.models.recommender import ItemParams, LocalTrainer

    config = from_legacy_config(config)
    if not math.isfinite(float(config.get("epsilon", math.inf))):
        raise ConfigError("distributed-noise rounds belong to private jobs only")
    enc = encoding_for(config)
    max_dropouts = int(config.get("max-dropouts", 0))
    check_protocol(context, enc, max_dropouts)
    split, catalogue = partner_split(context, config)
    if split.num_customers > enc.max_customers:
        raise SecureAggregationError(f"this partner has {split.num_customers} customers, more than the job's public "
                                     f"bound {enc.max_customers}; refused")
    items = ItemParams.from_matrix(np.asarray(parameters[0]))
    if items.num_items != catalogue.num_items:
        raise ConfigError(f"item table has {items.num_items} rows for a catalogue of {catalogue.num_items} items")
    cfg = bpr_config(config)
    path, state = _load_or_new_state(context, config, split)
    _check_budget(context, config, state, enc.noise_multiplier, 1.0, 1, "this round")
    trainer = LocalTrainer(split, catalogue.num_items, cfg, seed=round_seed(config, context, 2),
                           customer_embeddings=state.embeddings)
    total, _ = trainer.clipped_item_sum(items, enc.clip)
    share = encode_noisy_share(total, enc).reshape(total.shape)
    assert trainer.customer_embeddings is not None
    state.embeddings = trainer.customer_embeddings
    state.rounds += 1
    state.accountant.step(enc.noise_multiplier, 1.0, 1)
    save_customer_state(path, state, vault_for(context, config))
    context.state.config_records[GUARD_RECORD] = ConfigRecord({"max-dropouts": max_dropouts,
                                                               "partners": enc.partners})
    return [share], 1, {}


def dropout_guard_mod(msg: Message, ctxt: Context, call_next):  # type: ignore[no-untyped-def]
    """Before ``secaggplus_mod``: in the unmask stage of a distributed-noise round, refuse to send shares
    when more partners dropped out than the job tolerates (their noise shares are missing from the sum)."""
    if GUARD_RECORD not in ctxt.state.config_records or RECORD_KEY_CONFIGS not in msg.content.config_records:
        return call_next(msg, ctxt)
    configs = msg.content.config_records[RECORD_KEY_CONFIGS]
    if configs.get(Key.STAGE) != Stage.UNMASK:
        return call_next(msg, ctxt)
    guard = ctxt.state.config_records.pop(GUARD_RECORD)
    dead = list(configs.get(Key.DEAD_NODE_ID_LIST, []))  # type: ignore[arg-type]
    allowed = int(guard["max-dropouts"])  # type: ignore[arg-type]
    if len(dead) > allowed:
        reason = (f"SecureAggregationError: {len(dead)} partner(s) dropped out of this round, at most {allowed} "
                  "tolerated: the sum would lack their noise shares; this partner refuses to unmask it")
        return Message(Error(code=GUARD_ERROR_CODE, reason=reason), reply_to=msg)
    return call_next(msg, ctxt)

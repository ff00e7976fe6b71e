"""Distributed noise under SecAgg+: the encoding survives Flower's quantiser exactly, sensitivity and noise
are what the accounting assumes, overflow is refused, and partners refuse to unmask sums that lost shares."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.common.secure_aggregation.quantization import dequantize, quantize
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE, Key, Stage

from fedinsight.core.errors import ConfigError, SecureAggregationError
from fedinsight.federation.secagg import (
    GUARD_RECORD,
    check_secagg_setup,
    dropout_guard_mod,
    from_legacy_config,
    to_legacy_config,
)
from fedinsight.privacy.distributed_dp import MODULUS, DistributedNoise, decode_sum, encode_noisy_share

COORDS = 300 * 9


def _enc(partners: int = 4, honest: int | None = None, sigma: float = 2.0) -> DistributedNoise:
    return DistributedNoise.for_job(partners=partners, honest=honest or partners, noise_multiplier=sigma, clip=1.0,
                                    max_customers=60, coordinates=COORDS, rounds=20)


def _clipped_sum(rng: np.random.Generator, customers: int = 60) -> np.ndarray:
    """A sum of per-customer vectors, each of L2 norm <= 1 (what clipping produces)."""
    g = rng.standard_normal((customers, COORDS))
    g /= np.maximum(1.0, np.linalg.norm(g, axis=1, keepdims=True))
    return g.sum(axis=0)


def test_flower_quantisation_of_a_share_is_exact_and_the_sum_decodes_exactly():
    enc = _enc()
    rng = np.random.default_rng(0)
    shares = [encode_noisy_share(_clipped_sum(rng), enc) for _ in range(enc.partners)]
    settings = enc.flower_settings()
    quantised = [quantize([s], settings["clipping_range"], settings["quantization_range"])[0] for s in shares]
    for share, q in zip(shares, quantised, strict=True):
        # no stochastic rounding fired: the integer is exactly the grid point shifted by Q/2
        expected = np.rint(share / enc.step).astype(np.int64) + enc.quantization // 2
        assert np.array_equal(q.astype(np.int64), expected)
        assert np.array_equal(quantize([share], settings["clipping_range"], settings["quantization_range"])[0], q)
    total = np.zeros(COORDS, dtype=np.int64)
    for q in quantised:
        total = (total + q.astype(np.int64)) % MODULUS
    assert enc.partners * enc.quantization < MODULUS  # the modular sum never wraps
    # Flower's server: dequantize, shift by the other partners' offsets, divide by the total weight
    mean = dequantize([total], settings["clipping_range"], settings["quantization_range"])[0]
    mean = (mean - (enc.partners - 1) * settings["clipping_range"]) / enc.partners
    assert np.array_equal(decode_sum(mean, enc.partners, enc), np.sum(shares, axis=0))


def test_rounding_to_the_grid_keeps_the_declared_sensitivity():
    enc = _enc()
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(50):
        s = _clipped_sum(rng)
        extra = rng.standard_normal(COORDS)
        neighbour = s + extra / np.linalg.norm(extra)  # one more customer, norm exactly C = 1
        moved = np.linalg.norm((np.rint(s / enc.step) - np.rint(neighbour / enc.step)) * enc.step)
        worst = max(worst, moved)
    assert 1.0 - 1e-6 <= worst <= enc.sensitivity
    assert enc.sensitivity == pytest.approx(1.0 + math.sqrt(COORDS) * enc.step)


def test_each_share_carries_one_honest_partners_part_of_the_noise():
    enc = _enc(partners=4, honest=3)
    shares = np.concatenate([encode_noisy_share(np.zeros(COORDS), enc) for _ in range(4)])
    expected = enc.noise_multiplier * enc.sensitivity / math.sqrt(3)
    # 4 x 2700 draws: the sample sd is within 4.5 % of the true one except with probability 4e-11 (chi-square)
    assert shares.std() == pytest.approx(expected, rel=0.045)
    # three honest shares sum to the full sigma * C' the ledger charges for
    assert enc.sum_noise_std == pytest.approx(enc.noise_multiplier * enc.sensitivity * math.sqrt(4 / 3))
    assert enc.tau < 1e-12 and enc.overflow_probability < 1e-12


def test_out_of_range_vectors_are_refused_not_clipped():
    enc = _enc()
    with pytest.raises(SecureAggregationError, match="secagg-max-customers"):
        encode_noisy_share(np.full(COORDS, 61.0), enc)
    tight = DistributedNoise(**{**enc.__dict__, "clipping_range": 61.0})  # one noise std above N_max C
    with pytest.raises(SecureAggregationError, match="clipping range"):
        encode_noisy_share(np.full(COORDS, 60.0), tight)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="honest"):
        _enc(partners=4, honest=5)
    with pytest.raises(ConfigError, match="at least 2"):
        _enc(partners=1)
    assert _enc(partners=100).quantization * 100 < MODULUS


def test_legacy_config_round_trip():
    config = {"item-ids": ["1", "2"], "dim": 8, "secagg-task": "recommend"}
    legacy = to_legacy_config(config)
    assert all(not isinstance(v, list) for v in legacy.values())
    assert from_legacy_config(legacy) == config


def _context(state: dict | None = None) -> Context:
    ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    if state is not None:
        ctx.state.config_records[RECORD_KEY_STATE] = ConfigRecord(state)
    return ctx


def _secagg_state(enc: DistributedNoise, **overrides) -> dict:
    settings = enc.flower_settings()
    state = {"clipping_range": float(settings["clipping_range"]), "target_range": int(settings["quantization_range"]),
             "mod_range": MODULUS, "max_weight": 1.0, "sample_num": enc.partners, "share_num": enc.partners}
    return {**state, **overrides}


def test_partner_checks_how_the_coordinator_set_up_secagg():
    enc = _enc()

    def check_protocol(context, enc, max_dropouts):  # the shared check, as the recommender's partner calls it
        check_secagg_setup(context, enc.flower_settings(), enc.partners, max_dropouts)

    check_protocol(_context(_secagg_state(enc)), enc, 0)
    with pytest.raises(SecureAggregationError, match="outside SecAgg"):
        check_protocol(_context(), enc, 0)
    with pytest.raises(SecureAggregationError, match="set up with"):
        check_protocol(_context(_secagg_state(enc, target_range=2**22)), enc, 0)
    with pytest.raises(SecureAggregationError, match="max-weight"):
        check_protocol(_context(_secagg_state(enc, max_weight=1000.0)), enc, 0)
    with pytest.raises(SecureAggregationError, match="only 3 of the job's 4"):
        check_protocol(_context(_secagg_state(enc, sample_num=3, share_num=3)), enc, 0)
    check_protocol(_context(_secagg_state(enc, sample_num=3, share_num=3)), enc, 1)
    with pytest.raises(SecureAggregationError, match="num_shares = all"):
        check_protocol(_context(_secagg_state(enc, share_num=3)), enc, 0)


def _unmask_msg(dead: list[int]) -> Message:
    configs = ConfigRecord({Key.STAGE: Stage.UNMASK, Key.ACTIVE_NODE_ID_LIST: [1, 2, 3],
                            Key.DEAD_NODE_ID_LIST: dead})
    return Message(RecordDict({RECORD_KEY_CONFIGS: configs}), dst_node_id=1, message_type="train")


@pytest.fixture
def task_identity():
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def test_partners_refuse_to_unmask_a_sum_that_lost_noise_shares(task_identity):
    calls: list[str] = []

    def call_next(msg, ctxt):
        calls.append("next")
        return Message(RecordDict(), reply_to=msg)

    ctx = _context()
    ctx.state.config_records[GUARD_RECORD] = ConfigRecord({"max-dropouts": 0, "partners": 4})
    reply = dropout_guard_mod(_unmask_msg([4]), ctx, call_next)
    assert reply.has_error() and "refuses to unmask" in reply.error.reason and calls == []
    assert GUARD_RECORD not in ctx.state.config_records  # one decision per round
    ctx.state.config_records[GUARD_RECORD] = ConfigRecord({"max-dropouts": 1, "partners": 4})
    assert not dropout_guard_mod(_unmask_msg([4]), ctx, call_next).has_error() and calls == ["next"]
    # other tasks' SecAgg+ rounds (no guard record) pass straight through
    assert not dropout_guard_mod(_unmask_msg([4, 5]), _context(), call_next).has_error()

"""The distributed-noise encoding of an insight batch: calibration, exactness of the grid, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedinsight.core.errors import ConfigError, SecureAggregationError
from fedinsight.privacy.distributed_dp import MODULUS
from fedinsight.tasks.insights.catalogue import default_batch
from fedinsight.tasks.insights.distributed import (
    MAX_INFLATION,
    Block,
    InsightsEncoding,
    shares_of,
    trust_text,
)
from fedinsight.tasks.insights.options import InsightsOptions
from fedinsight.tasks.insights.server import layout_of, price_batch

BLOCKS = [Block("counts", 20, 10.0, 2.0), Block("sums", 12, 16.0, math.sqrt(3.0))]


@pytest.mark.parametrize(("partners", "honest", "dropouts", "shares"), [(3, 0, 0, 3), (10, 0, 2, 8), (10, 6, 1, 5)])
def test_each_share_carries_the_total_variance_over_the_guaranteed_shares(partners, honest, dropouts, shares):
    assert shares_of(partners, honest, dropouts) == shares
    enc = InsightsEncoding.for_batch(BLOCKS, partners=partners, shares=shares, max_customers=100_000)
    for b in BLOCKS:
        noise = enc.noise(b.name)
        c_prime = noise.sensitivity
        assert 1.0 <= c_prime == pytest.approx(1 + math.sqrt(b.coordinates) * enc.step)
        # per-partner share sd (query units) = total sd / sqrt(shares), total sd = z C' L2
        share_sd = noise.share_scale * enc.step * b.l2
        assert share_sd == pytest.approx(b.multiplier * c_prime * b.l2 / math.sqrt(shares))
        # all K partners present: the sum carries z C' L2 sqrt(K / shares); with K = shares, 1/sqrt(K) of local
        assert enc.sum_noise_sd(b.name) == pytest.approx(share_sd * math.sqrt(partners))
        local = math.sqrt(partners) * b.multiplier * b.l2
        assert enc.sum_noise_sd(b.name, shares) / local == pytest.approx(c_prime / math.sqrt(partners))


def test_the_grid_fits_the_modulus_and_covers_the_public_bound():
    for partners in (2, 3, 10, 50):
        enc = InsightsEncoding.for_batch(BLOCKS, partners=partners, shares=partners, max_customers=120_000)
        assert partners * enc.quantization < MODULUS
        assert enc.clipping_range >= 120_000 and math.log2(enc.clipping_range).is_integer()
        assert enc.overflow_probability < 1e-12 and all(enc.noise(b.name).tau < 1e-12 for b in BLOCKS)


def test_shares_sum_to_the_exact_vectors_plus_noise_of_the_calibrated_sd():
    enc = InsightsEncoding.for_batch(BLOCKS, partners=3, shares=3, max_customers=5_000)
    rng = np.random.default_rng(3)  # test data, not DP noise (the noise comes from OpenDP's sampler)
    vectors = [{"counts": rng.integers(0, 1000, 20).astype(float), "sums": rng.uniform(0, 500, 12)}
               for _ in range(3)]
    draws = {b.name: [] for b in BLOCKS}
    for _ in range(200):
        total = sum(enc.encode(v) for v in vectors)
        # Flower hands the coordinator the average of the unmasked vectors
        decoded = enc.decode(total / 3, 3)
        for b in BLOCKS:
            exact = sum(v[b.name] for v in vectors)
            err = decoded[b.name] - exact
            assert np.abs(err).max() < 8 * enc.sum_noise_sd(b.name)
            draws[b.name].append(err)
    for b in BLOCKS:  # 200 x d draws: the sample sd is within ~5 % of the calibrated one
        sd = float(np.std(np.concatenate(draws[b.name])))
        assert sd == pytest.approx(enc.sum_noise_sd(b.name), rel=0.12)


def test_refusals_are_typed_and_say_what_to_change():
    with pytest.raises(ConfigError, match="at least 2 partners"):
        InsightsEncoding.for_batch(BLOCKS, partners=1, shares=1, max_customers=10)
    with pytest.raises(ConfigError, match="max-dropouts"):
        shares_of(3, 0, 3)
    with pytest.raises(ConfigError, match="honest-partners"):
        shares_of(3, 4, 0)
    with pytest.raises(ConfigError, match="lower --max-customers"):  # a huge block on a coarse grid
        InsightsEncoding.for_batch([Block("big", 20_000, 10.0, 1.0)], partners=50, shares=50,
                                   max_customers=10_000_000)
    enc = InsightsEncoding.for_batch(BLOCKS, partners=3, shares=3, max_customers=100)
    with pytest.raises(SecureAggregationError, match="N_max"):  # a partner above the public bound
        enc.encode({"counts": np.full(20, 500.0), "sums": np.zeros(12)})
    with pytest.raises(ConfigError, match="distributed-secagg adds discrete-Gaussian"):
        InsightsOptions(noise_model="distributed-secagg", mechanism="laplace").validate()


def test_the_default_catalogue_fits_ten_partners_at_a_million_customers_each():
    batch = default_batch("synthetic", epsilon=1.0)
    noises, layouts = price_batch(batch), layout_of(batch)
    from fedinsight.tasks.insights.distributed import blocks_of

    names = [q.name for q in batch.queries]
    enc = InsightsEncoding.for_batch(
        blocks_of(names, {n: layouts[n].vector().size for n in names}, {n: noises[n].multiplier for n in names},
                  {n: layouts[n].l2 for n in names}), partners=10, shares=10, max_customers=1_000_000)
    assert all(enc.inflation(n) <= MAX_INFLATION for n in names)
    assert "at least 10 partners do not collude" in trust_text(10, 0, 0)


def test_the_planner_forecasts_the_distributed_noise_before_anything_is_spent():
    from pathlib import Path

    from fedinsight.tasks.insights import plan_spec

    docs = (Path(__file__).resolve().parents[3] / "docs" / "insights.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Your own questions"):]
    text = section[section.index("```toml") + len("```toml"):section.index("```", section.index("```toml") + 7)]
    local = plan_spec(text, partners=10, sizes={"customers": 1_000_000})
    dist = plan_spec(text, partners=10, sizes={"customers": 1_000_000}, noise_model="distributed-secagg")
    assert dist.as_dict()["noise_model"] == "distributed-secagg" and local.noise_model == "local"
    for a, b in zip(local.insights, dist.insights, strict=True):
        for ca, cb in zip(a.classes, b.classes, strict=True):  # about 1/sqrt(10), times the grid's rounding
            assert 1 / math.sqrt(10) <= cb.noise_sd / ca.noise_sd <= MAX_INFLATION / math.sqrt(10)
    # (the share of suppressed cells need not fall: a cell expected below the bar is hidden more surely)


def test_a_partner_checks_secaggs_own_state_before_it_releases_a_share():
    from flwr.app import ConfigRecord, Context, RecordDict
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_STATE

    from fedinsight.federation.secagg import check_secagg_setup

    enc = InsightsEncoding.for_batch(BLOCKS, partners=3, shares=3, max_customers=5_000)
    settings = enc.flower_settings()
    good = {"clipping_range": float(settings["clipping_range"]), "target_range": int(settings["quantization_range"]),
            "mod_range": int(settings["modulus_range"]), "max_weight": 1.0, "sample_num": 3, "share_num": 3}

    def context(**state) -> Context:
        ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
        ctx.state.config_records[RECORD_KEY_STATE] = ConfigRecord({**good, **state})
        return ctx

    check_secagg_setup(context(), settings, 3, 0)
    for state, message in (({"clipping_range": 2.0 * enc.clipping_range}, "set up with"),
                           ({"max_weight": 5.0}, "max-weight"), ({"sample_num": 2, "share_num": 2}, "only 2 of"),
                           ({"share_num": 1}, "num_shares")):
        with pytest.raises(SecureAggregationError, match=message):
            check_secagg_setup(context(**state), settings, 3, 0)
    check_secagg_setup(context(sample_num=2, share_num=2), settings, 3, 1)  # one tolerated drop-out
    with pytest.raises(SecureAggregationError, match="outside SecAgg"):
        check_secagg_setup(Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={}),
                           settings, 3, 0)

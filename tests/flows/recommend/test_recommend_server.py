"""Coordinator-side pieces of the recommender: aggregation, shrinkage, job settings, privacy plan."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.ledger import compose_epsilon
from fedinsight.tasks.recommend.options import PrivacyPlan, RecommendOptions
from fedinsight.tasks.recommend.server import (
    RecommendJob,
    ServerOptimizer,
    dp_update_noise_variance,
    itemwise_average,
    james_stein,
    popularity_bias,
)


def test_itemwise_average_weights_each_item_by_who_touched_it():
    a = np.array([[1.0, 1.0], [2.0, 2.0], [5.0, 5.0]])
    b = np.array([[3.0, 3.0], [0.0, 0.0], [7.0, 7.0]])
    # item 0: both touched it (1 and 3 customers); item 1: only partner a; item 2: nobody
    out = itemwise_average([a, b], [np.array([1.0, 4.0, 0.0]), np.array([3.0, 0.0, 0.0])])
    assert out[0].tolist() == [2.5, 2.5]
    assert out[1].tolist() == [2.0, 2.0]  # not diluted by partner b, which never saw item 1
    assert out[2].tolist() == [0.0, 0.0]


def test_james_stein_keeps_signal_rows_and_zeroes_noise_rows():
    rng = np.random.default_rng(0)
    dim = 32
    noise = rng.standard_normal((200, dim + 1)) * 0.1
    signal = np.zeros((200, dim + 1))
    signal[:20, :dim] = 2.0  # 20 items with a strong change
    shrunk, factor = james_stein(signal + noise, 0.01)
    assert (factor[:20] > 0.95).all()
    assert np.median(factor[20:]) < 0.3
    assert np.abs(shrunk[20:, :dim]).mean() < np.abs(noise[20:, :dim]).mean() / 2
    unchanged, ones = james_stein(signal + noise, 0.0)
    assert np.array_equal(unchanged, signal + noise) and (ones == 1).all()


def test_noise_variance_of_the_averaged_update():
    job = RecommendJob(RecommendOptions(epsilon=8.0, catalogue_path="x", dp_lr=2.0, clip=0.5, sample_rate=1.0),
                       partners=2, delta=1e-5, job_id="j", timeout_s=60.0)
    # per step a partner adds dp_lr * sigma * C / (q N) noise; weights N_k / sum N square in
    var = dp_update_noise_variance(job, 3.0, sizes=[100, 300], steps=[1, 2])
    expected = 0.25**2 * 1 * (2 * 3 * 0.5 / 100) ** 2 + 0.75**2 * 2 * (2 * 3 * 0.5 / 300) ** 2
    assert var == pytest.approx(expected)


def test_fedadam_and_fedavg_steps():
    params = np.zeros(3)
    assert ServerOptimizer("fedavg", 2.0, (3,)).step(params, np.array([1.0, -1.0, 0.0])).tolist() == [2, -2, 0]
    adam = ServerOptimizer("fedadam", 0.1, (3,), tau=1e-3)
    first = adam.step(params, np.array([1.0, -1.0, 0.0]))
    assert np.sign(first).tolist() == [1, -1, 0] and abs(first[0]) == pytest.approx(abs(first[1]))


def test_options_are_read_and_checked():
    options = RecommendOptions.from_run_config({"partners": "3", "rounds": 4, "epsilon": "inf",
                                                "catalogue-path": "c", "local-epochs": 1, "unrelated": "ignored"})
    assert options.rounds == 4 and not options.private and options.local_epochs == 1
    assert RecommendOptions.from_run_config({"catalogue": "c", "server-opt": "fedadam"}).catalogue_path == "c"
    with pytest.raises(ConfigError, match="--dim must be a whole number"):
        RecommendOptions.from_run_config({"dim": "big"})
    with pytest.raises(ConfigError, match="--explore must be less than 1"):
        RecommendOptions(explore=1.0)
    with pytest.raises(ConfigError, match="--honest-partners"):
        RecommendOptions(epsilon=8.0, noise_model="distributed-secagg", local_epochs=1,
                         honest_partners=5).check_partners(3)


def test_privacy_plan_fits_the_target_with_and_without_a_popularity_release():
    for share in (0.0, 0.3):
        job = RecommendOptions(epsilon=4.0, delta=1e-3, rounds=10, local_epochs=1, catalogue_path="c",
                               popularity_share=share)
        plan = PrivacyPlan.for_job(job, 1e-3)
        assert plan.steps == 10
        assert (plan.popularity_noise_multiplier > 0) == (share > 0)
        assert compose_epsilon(plan.events(job), 1e-3) <= 4.0 + 1e-9
    assert PrivacyPlan.for_job(RecommendOptions(catalogue_path="c", epsilon=math.inf), 1e-3).noise_multiplier == 0.0
    assert PrivacyPlan.for_job(RecommendOptions(catalogue_path="c"), 1e-3).noise_multiplier > 0  # private default


def test_popularity_bias_orders_items_and_flattens_what_noise_can_explain():
    bias = popularity_bias(np.array([500.0, 100.0, 10.0, -20.0]), noise_std=10.0)
    assert bias[0] > bias[1] > bias[2] == bias[3]
    assert bias.mean() == pytest.approx(0.0, abs=1e-6)

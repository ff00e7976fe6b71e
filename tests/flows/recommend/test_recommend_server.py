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


def test_evaluation_is_planned_charged_and_within_the_jobs_epsilon():
    from dp_accounting import dp_event

    from fedinsight.privacy.mechanisms import gaussian_noise_multiplier

    delta = 1e-6
    for eval_every, evaluations in ((0, 1), (4, 3)):  # evaluations after rounds 4 and 8, then the final one
        job = RecommendOptions(epsilon=1.0, rounds=10, catalogue_path="c", eval_every=eval_every)
        assert job.evaluations() == evaluations
        plan = PrivacyPlan.for_job(job, delta)
        assert plan.evaluations == evaluations
        # 10 % of the job's budget in rho: sigma_all x sqrt(evaluations / 0.1)
        assert plan.eval_noise_multiplier == pytest.approx(gaussian_noise_multiplier(1.0, delta)
                                                           * math.sqrt(evaluations / 0.1))
        event = dp_event.GaussianDpEvent(plan.eval_noise_multiplier)
        assert plan.evaluation_events() == [event if evaluations == 1 else
                                            dp_event.SelfComposedDpEvent(event, evaluations)]
        assert compose_epsilon(plan.events(job), delta) <= 1.0 + 1e-9  # training got the rest
        assert compose_epsilon(plan.events(job), delta) > 0.99
    off = RecommendOptions(epsilon=1.0, rounds=10, catalogue_path="c", eval_share=0.0)
    assert off.evaluations() == 0 and PrivacyPlan.for_job(off, delta).evaluation_events() == []
    with pytest.raises(ConfigError, match="--eval-share 0 switches evaluation off"):
        RecommendOptions(catalogue_path="c", eval_share=0.0, eval_every=2)


def test_default_settings_still_get_a_sane_training_noise_multiplier():
    """epsilon 1, delta 1e-6, 50 full-batch rounds, 10 % for the final evaluation: training's sigma rises a few
    per cent over a job without evaluation (32.1 -> 33.9), and the evaluation noise is 14, not the 41 of a
    standalone (0.1, delta) calibration."""
    job = RecommendOptions(catalogue_path="c")
    with_eval = PrivacyPlan.for_job(job, 1e-6)
    without = PrivacyPlan.for_job(RecommendOptions(catalogue_path="c", eval_share=0.0), 1e-6)
    assert job.epsilon == 1.0 and job.rounds == 50 and job.sample_rate == 1.0
    assert 25 < without.noise_multiplier < with_eval.noise_multiplier < 1.1 * without.noise_multiplier
    assert with_eval.eval_noise_multiplier < 20


def test_the_default_delta_and_the_partners_rule():
    from fedinsight.federation.budget import delta_limit as max_delta  # the rule every task shares
    from fedinsight.tasks.recommend.server import default_delta

    assert default_delta([94, 120]) == 1e-6  # MovieLens-sized partners: 1e-6 is already far below 1/(10 x 120)
    assert default_delta([50, 400_000]) == pytest.approx(1 / 4_000_000)  # a large partner pulls it down
    assert max_delta(60) == pytest.approx(1 / 600)
    assert all(default_delta([n]) <= max_delta(n) for n in (1, 10, 99_999, 100_000, 10**7))


def _session(options, sizes):
    from types import SimpleNamespace

    partners = {k: SimpleNamespace(partner_id=f"p{k}", facts={"customers": n}) for k, n in enumerate(sizes)}
    return SimpleNamespace(options=options, partners=partners, nodes=list(partners),
                           job=SimpleNamespace(job_id="j", timeout=60.0))


def test_the_coordinator_refuses_a_delta_its_largest_partner_would_refuse():
    from fedinsight.tasks.recommend.server import job_of

    options = RecommendOptions(catalogue_path="c", delta=1e-4)
    assert job_of(_session(options, [100, 900])).delta == 1e-4
    with pytest.raises(ConfigError, match="above 1 / \\(10 x 2000 customers\\)"):
        job_of(_session(options, [100, 2000]))
    assert job_of(_session(RecommendOptions(catalogue_path="c"), [100, 2000])).delta == 1e-6


def test_private_manifest_declares_a_gaussian_evaluation_and_no_counts():
    from fedinsight.models.ranking import Catalogue
    from fedinsight.tasks.recommend.server import releases

    catalogue = Catalogue.from_ids([f"i{j}" for j in range(200)])
    for eval_metrics, fields in (("accuracy", {"hr", "ndcg"}), ("all", {"hr", "ndcg", "ild", "hr_explore",
                                                                         "ndcg_explore", "ild_explore"})):
        options = RecommendOptions(catalogue_path="c", rounds=6, eval_every=2, eval_metrics=eval_metrics)
        job = RecommendJob(options, partners=3, delta=1e-6, job_id="j", timeout_s=60.0)
        plan = PrivacyPlan.for_job(job, 1e-6)
        evaluate = [r for r in releases(job, catalogue, plan) if r.reply == "evaluate"]
        assert [(r.record, r.mechanism) for r in evaluate] == [("release", "gaussian"), ("metrics", "public")]
        assert set(evaluate[0].fields) == fields and evaluate[0].count == 3  # after rounds 2 and 4, and final
        assert f"L2 sqrt({len(fields)})" in evaluate[0].sensitivity
    off = RecommendJob(RecommendOptions(catalogue_path="c", eval_share=0.0), partners=3, delta=1e-6, job_id="j",
                       timeout_s=60.0)
    assert not [r for r in releases(off, catalogue, PrivacyPlan.for_job(off, 1e-6)) if r.reply == "evaluate"]


def test_noised_metrics_are_means_over_the_public_count_with_their_interval():
    from fedinsight.models.ranking import Catalogue
    from fedinsight.privacy.mechanisms import GAUSSIAN_Z95
    from fedinsight.tasks.recommend.server import noised_metrics

    catalogue = Catalogue.from_ids([f"i{j}" for j in range(200)])
    job = RecommendJob(RecommendOptions(catalogue_path="c"), partners=4, delta=1e-6, job_id="j", timeout_s=60.0)
    plan = PrivacyPlan.for_job(job, 1e-6)
    block = noised_metrics(job, plan, {"hr": 180.0, "ndcg": -7.0}, customers=400, partners=4, catalogue=catalogue)
    assert block["hr@10"] == pytest.approx(0.45) and block["ndcg@10"] == 0.0  # clamped to [0, 1]
    assert block["coverage"] is None and block["ild"] is None and "explore" not in block
    assert block["noised"] and block["customers"] == 400 and block["releases"] == 1
    assert block["ci95_halfwidth"] == pytest.approx(GAUSSIAN_Z95 * plan.eval_noise_multiplier * math.sqrt(2) * 2 / 400,
                                                    abs=1e-6)
    assert 0 < block["epsilon"] < 1.0

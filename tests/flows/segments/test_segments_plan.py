"""The segments job's plan: its releases compose to exactly the job's epsilon, and the noise is what it says.

Written before the task's workflow: the charge is the contract (the ledgers are charged the plan's events
before any partner computes, each partner's gate records the same events).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError
from fedinsight.federation.delta import provisional
from fedinsight.federation.task import Plan
from fedinsight.privacy.ledger import compose_epsilon
from fedinsight.privacy.mechanisms import gaussian
from fedinsight.tasks.segments import kmeans, manifest
from fedinsight.tasks.segments.options import MIN_GROUP_FLOOR, SegmentsOptions


@pytest.mark.parametrize(("epsilon", "iterations"), [(0.3, 5), (1.0, 5), (3.0, 2), (1.0, 1)])
def test_the_plan_composes_to_the_jobs_epsilon(epsilon, iterations):
    plan = kmeans.noise_plan(epsilon, 1e-6, iterations)
    events = plan.events()
    assert len(events) == 1 + 2 * iterations + 1  # histogram, T x (counts, sums), sizes
    assert compose_epsilon(events, 1e-6) == pytest.approx(epsilon, rel=1e-5)
    assert compose_epsilon(events, 1e-6) <= epsilon


def test_the_manifests_charges_are_the_plans_events_and_compose_to_the_options_epsilon():
    options = SegmentsOptions(k=4, iterations=3, epsilon=0.7, as_of="2026-01-01")
    m = manifest(options)
    plan = options.noise()
    assert sorted(e.noise_multiplier for e in m.events()) == pytest.approx(
        sorted(e.noise_multiplier for e in plan.events()))
    charges = Plan.from_manifest(m, kind="query").charges
    assert compose_epsilon([c.event for c in charges], provisional(options.delta)) == pytest.approx(0.7, rel=1e-5)
    shapes = {(r.reply, r.record): r.fields for r in m.releases}
    assert shapes[("assign", "counts")] == {"counts": (4,)} and shapes[("assign", "sums")] == {"sums": (12,)}
    assert shapes[("histogram", "release")] == {"histogram": (options.grid_size ** 3,)}


def test_rho_is_split_by_the_declared_shares():
    plan = kmeans.noise_plan(1.0, 1e-6, 4)
    rho = [1 / (2 * m**2) for m in (plan.init, plan.counts, plan.sums, plan.sizes)]
    assert rho[0] == pytest.approx(kmeans.INIT_SHARE * plan.rho)
    assert rho[3] == pytest.approx(kmeans.SIZES_SHARE * plan.rho)
    assert 4 * (rho[1] + rho[2]) == pytest.approx((1 - kmeans.INIT_SHARE - kmeans.SIZES_SHARE) * plan.rho)
    assert rho[1] / (rho[1] + rho[2]) == pytest.approx(kmeans.COUNT_SHARE)


def test_more_iterations_or_less_epsilon_means_more_noise_per_release():
    base = kmeans.noise_plan(1.0, 1e-6, 3)
    assert kmeans.noise_plan(1.0, 1e-6, 6).sums > base.sums
    assert kmeans.noise_plan(0.3, 1e-6, 3).sums > base.sums


def test_the_released_noise_has_the_planned_scale():
    plan = kmeans.noise_plan(1.0, 1e-6, 5)
    bound = math.sqrt(3)
    noisy = gaussian(np.zeros(20_000), bound, plan.sums)
    assert noisy.scale == pytest.approx(plan.sums * bound)
    assert np.std(noisy.values) == pytest.approx(plan.sums * bound, rel=0.05)
    assert noisy.event == dp_event.GaussianDpEvent(plan.sums)


def test_options_refuse_a_minimum_group_below_the_floor_and_unknown_features():
    with pytest.raises(ConfigError):
        SegmentsOptions(min_group_size=MIN_GROUP_FLOOR - 1)
    with pytest.raises(ConfigError, match="features"):
        SegmentsOptions(features="recency,shoe_size")
    with pytest.raises(ConfigError, match="cells"):
        SegmentsOptions(features="recency,frequency,monetary,basket", grid=10)

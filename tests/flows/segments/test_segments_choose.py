"""Choosing k and the bad-input paths that are decided on the noisy histogram: all post-processing of a release
the job already charged (so no extra epsilon), and each one a documented fallback or a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.tasks.segments import choose, manifest, server
from fedinsight.tasks.segments.client import noisy_histogram
from fedinsight.tasks.segments.options import SegmentsOptions


def planted_vectors(centres: list[list[float]], per: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.concatenate([np.asarray(c) + 0.04 * rng.standard_normal((per, len(c))) for c in centres]), 0, 1)


def test_the_elbow_rule_picks_the_k_after_which_one_more_segment_barely_helps():
    assert choose.pick({2: 100.0, 3: 60.0, 4: 30.0, 5: 27.0, 6: 25.0}) == 4  # 30 -> 27 is a 10 % cut
    assert choose.pick({2: 100.0, 3: 90.0}) == 2
    assert choose.pick({2: 100.0, 3: 50.0, 4: 20.0}) == 4  # every step pays: the range's largest
    assert choose.pick({2: 0.0, 3: 0.0}) == 2


@pytest.mark.parametrize("text", ["2", "1-5", "5-3", "2-21", "a-b", "2-4-6"])
def test_a_bad_k_range_is_one_error_naming_the_flag(text):
    with pytest.raises(ConfigError, match="--k-range"):
        SegmentsOptions(k_range=text, as_of="2026-01-01")


def test_the_manifest_declares_the_ranges_largest_k_and_the_charge_does_not_depend_on_k():
    auto = SegmentsOptions(k_range="2-8", as_of="2026-01-01")
    fixed = SegmentsOptions(k=3, as_of="2026-01-01")
    shapes = {r.record: r.fields for r in manifest(auto).releases}
    assert shapes["counts"] == {"counts": (8,)} and shapes["sums"] == {"sums": (24,)}
    assert [e.noise_multiplier for e in manifest(auto).events()] == [e.noise_multiplier
                                                                      for e in manifest(fixed).events()]


def test_auto_k_finds_four_well_separated_groups_from_the_noisy_histogram_for_free():
    planted = [[0.15, 0.15, 0.15], [0.85, 0.15, 0.5], [0.5, 0.85, 0.85], [0.15, 0.85, 0.2]]
    parts = [planted_vectors(planted, 2_000, seed) for seed in range(3)]
    options = SegmentsOptions(k_range="2-8", epsilon=1.0, as_of="2026-01-01")
    histogram = np.sum([noisy_histogram(x, options) for x in parts], axis=0)
    chosen, centres, found = server.prepare(histogram, options, 3)
    # 6,000 customers per group in a few cells against cell noise of sd 14.3 x sqrt(3) ~ 25; the groups are
    # >= 0.6 apart, so the initialisation's cost falls by ~40 % per group found and by ~10 % after: the rule
    # sits between with margins of hundreds of noise sds on the summed costs
    assert chosen.k == 4 and centres.shape == (4, 3)
    assert found["choice"]["chosen"] == 4 and found["choice"]["epsilon"] == 0.0
    assert set(found["choice"]["costs"]) == {str(k) for k in range(2, 9)}
    assert found["notes"] == []


def test_a_feature_without_variance_is_kept_with_a_note_naming_it():
    rng = np.random.default_rng(3)
    x = planted_vectors([[0.2, 0.2], [0.8, 0.8]], 3_000, 4)
    x = np.column_stack([x[:, 0], np.full(len(x), 0.1772), x[:, 1]])  # frequency 1 for everyone
    rng.shuffle(x)
    options = SegmentsOptions(k=2, epsilon=1.0, as_of="2026-01-01")
    chosen, centres, found = server.prepare(noisy_histogram(x, options), options, 1)
    # the flat band holds all 6,000 customers in a few cells (hundreds each, against noise sd 14.3); a cell of another
    # band counts only if pure noise clears 3 sds (probability 0.13 % each), and even then adds ~50 of 6,000
    assert len(found["notes"]) == 1 and "'frequency'" in found["notes"][0]
    assert chosen.k == 2 and centres.shape == (2, 3)


def test_more_segments_than_cells_holding_customers_falls_back_to_that_many():
    x = np.repeat([[0.25, 0.25, 0.25], [0.75, 0.75, 0.75], [0.25, 0.75, 0.42]], 2_000, axis=0)  # 3 cells only
    options = SegmentsOptions(k=20, epsilon=1.0, as_of="2026-01-01")
    histogram = noisy_histogram(x, options)
    chosen, centres, found = server.prepare(histogram, options, 1)
    # the 3 cells of 2,000 customers clear 3 sds (43) of noise for sure; each of the 213 empty ones passes with
    # probability 0.13 % (one or more: 25 %; six or more: under one in a million), so the count is 3 to 8
    assert 3 <= chosen.k <= 8 and centres.shape == (chosen.k, 3)
    assert any("20 segments were asked for" in n for n in found["notes"])


def test_a_histogram_with_no_clear_customers_is_a_clear_error():
    options = SegmentsOptions(k=3, epsilon=1.0, as_of="2026-01-01")
    with pytest.raises(ConfigError, match="too few customers"):
        server.prepare(np.zeros(216), options, 3)


def test_the_simulation_baseline_is_refitted_at_the_k_the_job_chose():
    from fedinsight.tasks.segments import baselines, kmeans

    x = planted_vectors([[0.2, 0.2, 0.2], [0.8, 0.8, 0.8], [0.2, 0.8, 0.5]], 300, 6)
    fitted = baselines.best_kmeans(x, 5)  # fitted before the job chose k (at --k 5)
    summary = {"centres": baselines.best_kmeans(x, 3).tolist()}
    merged = baselines.merge(summary, {"centralized_cost": kmeans.cost(x, fitted),
                                       "centralized_centres": fitted.tolist(), baselines.VECTORS: x})
    assert len(merged["baselines"]["centralized_centres"]) == 3
    assert merged["baselines"]["cost_ratio"] == pytest.approx(1.0)  # the same non-private fit on both sides

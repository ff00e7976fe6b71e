"""The k-means pieces: each customer counted once, bounded contributions, and the coordinator's update."""

from __future__ import annotations

import numpy as np
import pytest

from fedinsight.tasks.segments import kmeans


def test_each_customer_is_in_one_cluster_and_one_cell():
    rng = np.random.default_rng(0)
    x = rng.random((500, 3))
    centres = rng.random((4, 3))
    counts, sums = kmeans.cluster_stats(x, centres)
    assert counts.sum() == 500 and sums.sum() == pytest.approx(x.sum())
    hist = kmeans.histogram(x, 5)
    assert hist.shape == (125,) and hist.sum() == 500
    cells = kmeans.cell_centres(3, 5)
    assert np.all(np.abs(cells[kmeans.grid_cells(x, 5)] - x) <= 0.1 + 1e-12)


def test_removing_one_customer_moves_the_releases_by_at_most_their_declared_bounds():
    rng = np.random.default_rng(1)
    x = rng.random((200, 3))
    centres = rng.random((3, 3))
    c1, s1 = kmeans.cluster_stats(x, centres)
    c0, s0 = kmeans.cluster_stats(x[1:], centres)
    assert np.linalg.norm(c1 - c0) <= 1.0 + 1e-12
    assert np.linalg.norm(s1 - s0) <= np.sqrt(3) + 1e-12
    assert np.linalg.norm(kmeans.histogram(x, 4) - kmeans.histogram(x[1:], 4)) <= 1.0 + 1e-12


def test_a_cluster_whose_noisy_count_is_too_small_keeps_its_centre():
    centres = np.array([[0.2, 0.2], [0.8, 0.8]])
    new = kmeans.update(centres, np.array([100.0, 3.0]), np.array([[30.0, 40.0], [9.0, -50.0]]), min_count=10)
    assert new[0] == pytest.approx([0.3, 0.4]) and new[1] == pytest.approx([0.8, 0.8])
    clipped = kmeans.update(centres, np.array([10.0, 10.0]), np.array([[50.0, -5.0], [1.0, 1.0]]), min_count=1)
    assert clipped[0] == pytest.approx([1.0, 0.0])


def test_weighted_kmeans_on_a_histogram_finds_planted_clusters():
    planted = np.array([[0.15, 0.15, 0.15], [0.85, 0.15, 0.5], [0.5, 0.85, 0.85]])
    rng = np.random.default_rng(2)
    x = np.clip(np.concatenate([p + 0.04 * rng.standard_normal((300, 3)) for p in planted]), 0, 1)
    found = kmeans.weighted_kmeans(kmeans.cell_centres(3, 6), kmeans.histogram(x, 6), 3, seed=0)
    nearest = np.linalg.norm(found[:, None] - planted[None], axis=2).min(axis=0)
    assert nearest.max() < 0.1

"""In-process runs of the segments workflow (benchmarks, tests): the partners' own noising code and the
coordinator's own update, on given vectors, without Flower or ledgers (callers price the runs themselves)."""

from __future__ import annotations

import numpy as np

from fedinsight.tasks.segments import server
from fedinsight.tasks.segments.client import noisy_histogram, noisy_sizes, noisy_stats
from fedinsight.tasks.segments.options import SegmentsOptions


def federated_kmeans(partners: list[np.ndarray], options: SegmentsOptions) -> np.ndarray:
    """The DP centres the task would release for partners holding these vectors (fresh OpenDP noise); with
    ``--k-range`` as many as the coordinator's elbow rule picks."""
    count = len(partners)
    options, centres, _ = server.prepare(np.sum([noisy_histogram(x, options) for x in partners], axis=0), options,
                                         count)
    for _ in range(options.iterations):
        stats = [noisy_stats(x, centres, options) for x in partners]
        centres = server.step(centres, np.sum([c for c, _ in stats], axis=0), np.sum([s for _, s in stats], axis=0),
                              options, count)
    return centres


def released_sizes(partners: list[np.ndarray], centres: np.ndarray, options: SegmentsOptions) -> np.ndarray:
    return np.sum([noisy_sizes(x, centres, options) for x in partners], axis=0)

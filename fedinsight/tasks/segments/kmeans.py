"""The maths of federated DP k-means: the noise plan, a partner's local statistics, the coordinator's update.

Initialisation (why not k random points): Lloyd's algorithm started from centres that ignore the data
converges to poor local optima, and with DP noise every extra iteration costs budget. FedDP-KMeans (Scott
et al., ICML 2025) spends part of the budget on a DP initialisation for exactly this reason, and Google's DP
clustering library builds its centres from a DP summary of the data (a noisy LSH tree / coreset) rather
than from public guesses. We do the simplest such summary: each partner releases one noisy histogram of its
customers over a public grid of ``grid^d`` cells of [0, 1]^d (each customer in one cell: L2 sensitivity 1);
the coordinator runs weighted k-means++ (public seed) on the cell centres weighted by the summed noisy
counts. That is post-processing, so the initial centres cost only the histogram.

Then ``iterations`` Lloyd steps: each partner assigns every customer to its nearest centre and releases the
per-cluster noisy counts (L2 1) and noisy vector sums (L2 sqrt(d): a vector in [0, 1]^d), the coordinator
sums them over partners and divides. A last round releases only the counts of the final centres (the
segment sizes in the report). All releases are Gaussian (OpenDP), so their cost is additive in zCDP/RDP:
the plan splits the job's rho by public weights and calibrates it so that the whole job composes (RDP, the
accountant used everywhere in fedinsight) to exactly the job's epsilon at its delta.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.ledger import compose_epsilon

INIT_SHARE = 0.1
"""Share of the job's rho spent on the initial histogram."""
SIZES_SHARE = 0.1
"""Share spent on the final segment sizes."""
COUNT_SHARE = 0.2
"""Within one Lloyd step, the counts' share (the sums carry d coordinates and need the rest)."""


@dataclass(frozen=True)
class NoisePlan:
    """Noise multipliers of every release of one job (sigma = multiplier x the release's L2 bound)."""

    init: float
    counts: float
    sums: float
    sizes: float
    iterations: int
    rho: float  # the job's total zCDP rho

    def events(self) -> list[dp_event.DpEvent]:
        """One partner's releases in the order it makes them."""
        return ([dp_event.GaussianDpEvent(self.init)]
                + [dp_event.GaussianDpEvent(self.counts), dp_event.GaussianDpEvent(self.sums)] * self.iterations
                + [dp_event.GaussianDpEvent(self.sizes)])


def _plan_for_rho(rho: float, iterations: int) -> NoisePlan:
    step = (1.0 - INIT_SHARE - SIZES_SHARE) * rho / iterations

    def multiplier(share_of_rho: float) -> float:
        return 1.0 / math.sqrt(2.0 * share_of_rho)

    return NoisePlan(multiplier(INIT_SHARE * rho), multiplier(COUNT_SHARE * step),
                     multiplier((1.0 - COUNT_SHARE) * step), multiplier(SIZES_SHARE * rho), iterations, rho)


def noise_plan(epsilon: float, delta: float, iterations: int) -> NoisePlan:
    """The largest-rho plan whose releases compose to at most ``epsilon`` at ``delta`` (bisection on rho)."""
    if not (epsilon > 0 and math.isfinite(epsilon) and 0 < delta < 1):
        raise ConfigError(f"segments needs epsilon > 0 and 0 < delta < 1 (got {epsilon}, {delta})")
    if iterations < 1:
        raise ConfigError(f"segments needs at least one iteration (got {iterations})")
    lo, hi = 1e-9, 1.0
    while compose_epsilon(_plan_for_rho(hi, iterations).events(), delta) < epsilon:
        lo, hi = hi, hi * 2.0
        if hi > 1e9:
            raise ConfigError(f"epsilon {epsilon} is too large to calibrate")
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if compose_epsilon(_plan_for_rho(mid, iterations).events(), delta) <= epsilon:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1 + 1e-7:
            break
    return _plan_for_rho(lo, iterations)


# --- partner side: exact, contribution-bounded statistics (noise is added by the caller, via OpenDP) ---

def grid_cells(vectors: np.ndarray, grid: int) -> np.ndarray:
    """Each vector's cell index in the public ``grid^d`` grid over [0, 1]^d."""
    x = np.clip(np.asarray(vectors, dtype=float), 0.0, 1.0)
    idx = np.minimum((x * grid).astype(int), grid - 1)
    return np.ravel_multi_index(idx.T, (grid,) * x.shape[1]) if len(x) else np.zeros(0, dtype=int)


def cell_centres(dim: int, grid: int) -> np.ndarray:
    """The centres of the grid's cells, in :func:`grid_cells`' order."""
    mids = (np.arange(grid) + 0.5) / grid
    return np.array(list(itertools.product(mids, repeat=dim)), dtype=float)


def histogram(vectors: np.ndarray, grid: int) -> np.ndarray:
    """Customers per grid cell (each customer counted once: L2 sensitivity 1)."""
    dim = np.asarray(vectors).shape[1]
    return np.bincount(grid_cells(vectors, grid), minlength=grid**dim).astype(float)


def clip_l2(vectors: np.ndarray, bound: float) -> np.ndarray:
    """Scale every row down to L2 norm ``bound`` at most (a no-op on [0, 1]^d with bound sqrt(d))."""
    x = np.asarray(vectors, dtype=float)
    norms = np.linalg.norm(x, axis=1, keepdims=True) if len(x) else np.zeros((0, 1))
    return x * np.minimum(1.0, bound / np.maximum(norms, 1e-12))


def assign(vectors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each vector's nearest centre (ties: the lower index)."""
    x = np.asarray(vectors, dtype=float)
    if not len(x):
        return np.zeros(0, dtype=int)
    d2 = ((x[:, None, :] - np.asarray(centres, dtype=float)[None, :, :]) ** 2).sum(axis=2)
    return d2.argmin(axis=1)


def cluster_stats(vectors: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(counts (k,), sums (k, d)) of the vectors assigned to each centre; each customer in one cluster."""
    x = clip_l2(vectors, math.sqrt(np.asarray(centres).shape[1]))
    labels = assign(x, centres)
    k, d = np.asarray(centres).shape
    counts = np.bincount(labels, minlength=k).astype(float)
    sums = np.zeros((k, d))
    np.add.at(sums, labels, x)
    return counts, sums


# --- coordinator side: post-processing of the summed noisy releases ---------------------------------

def weighted_kmeans(points: np.ndarray, weights: np.ndarray, k: int, seed: int, steps: int = 30) -> np.ndarray:
    """k centres of weighted ``points`` (k-means++ with a public seed, then Lloyd). Negative weights count 0."""
    rng = np.random.default_rng(seed)
    w = np.maximum(np.asarray(weights, dtype=float), 0.0)
    if w.sum() <= 0:
        w = np.ones(len(points))
    centres = [points[rng.choice(len(points), p=w / w.sum())]]
    for _ in range(1, k):
        d2 = ((points[:, None, :] - np.array(centres)[None]) ** 2).sum(axis=2).min(axis=1) * w
        centres.append(points[rng.choice(len(points), p=d2 / d2.sum())] if d2.sum() > 0
                       else points[rng.integers(len(points))])
    c = np.array(centres, dtype=float)
    for _ in range(steps):
        labels = assign(points, c)
        for j in range(k):
            mass = w[labels == j].sum()
            if mass > 0:
                c[j] = (points[labels == j] * w[labels == j, None]).sum(axis=0) / mass
    return c


def update(centres: np.ndarray, counts: np.ndarray, sums: np.ndarray, min_count: float) -> np.ndarray:
    """New centres from summed noisy counts and sums: a cluster whose noisy count is below ``min_count`` keeps
    its centre (dividing by a count that is mostly noise would throw it anywhere); means clipped to [0, 1]."""
    new = np.array(centres, dtype=float, copy=True)
    for j, count in enumerate(np.asarray(counts, dtype=float)):
        if count >= min_count:
            new[j] = np.clip(np.asarray(sums)[j] / count, 0.0, 1.0)
    return new


def cost(vectors: np.ndarray, centres: np.ndarray) -> float:
    """The k-means cost: the sum of squared distances to the nearest centre."""
    x = np.asarray(vectors, dtype=float)
    if not len(x):
        return 0.0
    d2 = ((x[:, None, :] - np.asarray(centres, dtype=float)[None, :, :]) ** 2).sum(axis=2)
    return float(d2.min(axis=1).sum())

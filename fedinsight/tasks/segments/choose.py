"""What the coordinator learns from the noisy histogram before the Lloyd steps: how many segments to find, and
whether the data can carry them. All of it is post-processing of the histogram the job already released and
charged, so none of it costs any extra epsilon.

Choosing k (``--k-range 2-8``): for each k of the public range the coordinator runs its usual initialisation
(weighted k-means++ on the grid's cell centres, weighted by the summed noisy counts) and takes that
initialisation's weighted k-means cost. The cost always falls as k grows; the chosen k is the smallest one
after which one more segment would cut the cost by less than :data:`ELBOW` (an elbow rule). Why that rule:
a real segment that two centres share costs a large share of the total (the planted segments, 0.4 apart,
cut it by 36-51 % from 4 to 5 segments), while splitting a real segment or fitting noise and grid cells buys
10-18 % (5 to 6), on 100,000 planted customers at epsilon 0.3 and 1. Criteria that need releases of their
own (noisy within-cluster sums per k) would spend budget on every candidate k; this one is free.

Bad input handled here: a feature whose values barely vary (a flat marginal of the histogram) is reported
as a note, not an error -- k-means is unaffected by a constant coordinate, it only cannot separate segments;
asking for more segments than the histogram has cells that clearly hold customers falls back to that many
segments (at least 2, else a :class:`ConfigError`), as more centres would be duplicates or empty.
"""

from __future__ import annotations

import numpy as np

from fedinsight.core.errors import ConfigError

ELBOW = 0.2
"""One more segment must cut the histogram's k-means cost by at least this share to be worth it."""
OCCUPIED_SD = 3.0
"""A grid cell "clearly holds customers" when its summed noisy count clears this many noise sds (pure-noise
cells pass with probability 0.13 %, so about 0.3 of 216 empty cells would)."""
FLAT_SHARE = 0.95
"""A feature with at least this share of the histogram's customers in one band of the grid is called flat."""


def parse_range(text: str) -> tuple[int, int] | None:
    """``"2-8"`` -> (2, 8); ``""`` -> None. Bounds within 2..20, lower below upper."""
    if not text:
        return None
    try:
        lo, hi = (int(part) for part in str(text).split("-"))
    except ValueError:
        raise ConfigError(f"--k-range {text!r} must be two whole numbers such as 2-8") from None
    if not 2 <= lo < hi <= 20:
        raise ConfigError(f"--k-range {text!r} must satisfy 2 <= lower < upper <= 20 (e.g. 2-8)")
    return lo, hi


def weighted_cost(cells: np.ndarray, weights: np.ndarray, centres: np.ndarray) -> float:
    """The k-means cost of ``centres`` on the cell centres, weighted by the (clipped) noisy counts."""
    return float((((cells[:, None, :] - centres[None]) ** 2).sum(axis=2).min(axis=1) * weights).sum())


def pick(costs: dict[int, float]) -> int:
    """The smallest k whose next k cuts the cost by less than :data:`ELBOW`; the largest k if every step pays."""
    ks = sorted(costs)
    for k, following in zip(ks, ks[1:], strict=False):
        if costs[k] <= 0 or costs[following] > (1.0 - ELBOW) * costs[k]:
            return k
    return ks[-1]


def occupied(histogram: np.ndarray, cell_sd: float) -> int:
    """How many cells' summed noisy counts clear :data:`OCCUPIED_SD` noise sds."""
    return int((np.asarray(histogram, dtype=float) >= OCCUPIED_SD * cell_sd).sum())


def flat_features(histogram: np.ndarray, names: tuple[str, ...], grid: int, cell_sd: float) -> list[str]:
    """Features whose histogram marginal, over the cells that clearly hold customers (see :func:`occupied`; the
    others are mostly noise), puts :data:`FLAT_SHARE` or more of the customers in one band."""
    h = np.asarray(histogram, dtype=float)
    w = np.where(h >= OCCUPIED_SD * cell_sd, h, 0.0).reshape((grid,) * len(names))
    total = w.sum()
    if total <= 0:
        return []
    flat = []
    for axis, name in enumerate(names):
        marginal = w.sum(axis=tuple(a for a in range(len(names)) if a != axis))
        if marginal.max() >= FLAT_SHARE * total:
            flat.append(name)
    return flat

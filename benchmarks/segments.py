"""Benchmark of federated DP k-means (the segments task): the price of privacy in k-means cost, and recovery of
planted clusters (prints JSON).

Two kinds of data, each split evenly across 3 partners:

- ``planted``: a small generator inside this file -- ``k`` cluster centres drawn (fixed seed) in [0.15, 0.85]^3,
  customers spread around them (sd 0.06, clipped to [0, 1]): the adjusted Rand index (ARI) of the DP segments
  against the planted labels says whether the DP centres find the clusters that are really there;
- ``cdnow``: the built-in CDNOW customers (23,570, the whole dataset) as the task's recency/frequency/monetary
  vectors at 1998-07-01.

For each epsilon (0.3, 1, 3) and each data set, ``draws`` runs of the task's own partner noising and
coordinator update (:mod:`fedinsight.tasks.segments.simulate`, fresh OpenDP noise each time, no Flower) give the
ratio of the DP centres' k-means cost to non-private k-means (best of 3 k-means++ starts) on the same pooled
vectors -- median and worst -- and, for ``planted``, the ARI of the DP and the non-private labels.

Usage::

    python benchmarks/segments.py             # planted 3,000 and 30,000 customers + CDNOW, 10 draws (~2 min here)
    python benchmarks/segments.py --quick     # planted 3,000 only, 3 draws
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from fedinsight.tasks.segments import kmeans
from fedinsight.tasks.segments.baselines import best_kmeans
from fedinsight.tasks.segments.options import SegmentsOptions
from fedinsight.tasks.segments.simulate import federated_kmeans

EPSILONS = (0.3, 1.0, 3.0)
PARTNERS = 3


def planted(customers: int, k: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, labels): ``k`` planted clusters in [0, 1]^3."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.15, 0.85, size=(k, 3))
    labels = rng.integers(k, size=customers)
    return np.clip(centres[labels] + 0.06 * rng.standard_normal((customers, 3)), 0, 1), labels


def cdnow_vectors() -> np.ndarray:
    from fedinsight.data.federation import PartitionSpec, load_federation
    from fedinsight.tasks.segments.features import customer_vectors

    parts = load_federation("cdnow", PartitionSpec(partners=1))
    data = next(iter(parts.values()))
    return customer_vectors(data.transactions, "1998-07-01", ("recency", "frequency", "monetary")).to_numpy()


def split(x: np.ndarray, seed: int = 3) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(x))
    return [x[i] for i in np.array_split(order, PARTNERS)]


def measure(name: str, x: np.ndarray, labels: np.ndarray | None, k: int, draws: int) -> dict[str, Any]:
    started = time.perf_counter()
    central = best_kmeans(x, k)
    base = kmeans.cost(x, central)
    parts = split(x)
    out: dict[str, Any] = {"data": name, "customers": int(len(x)), "k": k, "partners": PARTNERS,
                           "centralized_cost": round(base, 3)}
    if labels is not None:
        out["centralized_ari"] = round(float(adjusted_rand_score(labels, kmeans.assign(x, central))), 4)
    for epsilon in EPSILONS:
        options = SegmentsOptions(k=k, epsilon=epsilon, as_of="2000-01-01")
        ratios, aris = [], []
        for _ in range(draws):
            centres = federated_kmeans(parts, options)
            ratios.append(kmeans.cost(x, centres) / base)
            if labels is not None:
                aris.append(float(adjusted_rand_score(labels, kmeans.assign(x, centres))))
        row: dict[str, Any] = {"cost_ratio_median": round(float(np.median(ratios)), 4),
                               "cost_ratio_max": round(float(np.max(ratios)), 4)}
        if aris:
            row.update({"ari_median": round(float(np.median(aris)), 4), "ari_min": round(float(np.min(aris)), 4)})
        out[f"epsilon_{epsilon:g}"] = row
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="planted 3,000 customers only, 3 draws")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args(argv)
    draws = 3 if args.quick else args.draws
    results = []
    for customers in (3_000,) if args.quick else (3_000, 30_000):
        x, labels = planted(customers, args.k)
        results.append(measure(f"planted-{customers}", x, labels, args.k, draws))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if not args.quick:
        results.append(measure("cdnow", cdnow_vectors(), None, args.k, draws))
    options = SegmentsOptions(k=args.k)
    print(json.dumps({"benchmark": "segments", "draws": draws, "iterations": options.iterations,
                      "delta": options.delta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

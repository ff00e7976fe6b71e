"""Benchmark of federated DP k-means (the segments task) against issue 15's goals: the price of privacy in k-means
cost, and recovery of planted segments (prints JSON).

Goals: at epsilon 1 with 100,000 customers over 10 partners, k-means cost <= 1.10 x non-private k-means on the
same vectors, planted segments recovered with adjusted Rand index (ARI) >= 0.9; epsilon 0.3 and 3 and 10,000
customers reported alongside; a Flower run at 100,000 customers under 5 minutes.

Data:

- ``planted``: :mod:`fedinsight.data.synth_segments` -- 5 segments of known centres in the task's
  recency/frequency/monetary space, well separated (centres >= 0.41 apart, spread 0.05 per coordinate), drawn as
  purchases and turned into vectors by the task's own :func:`~fedinsight.tasks.segments.features.customer_vectors`
  at each partner, split over ``--partners`` partners by the generator;
- ``cdnow``: the built-in CDNOW customers (23,570) as recency/frequency/monetary at 1998-07-01, split evenly at
  random over ``--cdnow-partners`` partners (3 by default, as before).

For each epsilon (0.3, 1, 3), ``draws`` runs of the task's own partner noising and coordinator update
(:mod:`fedinsight.tasks.segments.simulate`, fresh OpenDP noise each time, no Flower) give the ratio of the DP
centres' k-means cost to non-private k-means (best of 3 k-means++ starts) on the same pooled vectors -- median and
worst -- the ARI of the DP labels and of the non-private ones against the planted labels, and seconds per run.
``--flower`` also writes the largest planted set as partner folders and times ``fedinsight simulate segments`` on
it (the real Flower simulation engine, ledgers and all), with the machine's load average.

Usage::

    python benchmarks/segments.py                       # planted 10,000 and 100,000 over 10 partners + CDNOW
    python benchmarks/segments.py --flower              # ... and one Flower run at 100,000 customers
    python benchmarks/segments.py --quick               # planted 10,000 only, 3 draws
    python benchmarks/segments.py --iterations 2        # fewer Lloyd steps, more budget per step
    python benchmarks/segments.py --k-range 2-8         # the task picks k: how often each k is chosen
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import Progress
from sklearn.metrics import adjusted_rand_score

from fedinsight.data.synth_segments import SegmentsConfig, generate, write_segments
from fedinsight.tasks.segments import kmeans
from fedinsight.tasks.segments.baselines import best_kmeans
from fedinsight.tasks.segments.features import customer_vectors
from fedinsight.tasks.segments.options import SegmentsOptions
from fedinsight.tasks.segments.simulate import federated_kmeans

EPSILONS = (0.3, 1.0, 3.0)
FEATURES = ("recency", "frequency", "monetary")


def planted(customers: int, partners: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, str]:
    """(each partner's vectors, the planted labels in the same pooled order, as_of) from the generator."""
    config = SegmentsConfig(customers=customers, partners=partners, seed=seed)
    frames, labels, _ = generate(config)
    by_id = labels.set_index("customer_id")["segment"]
    parts, truth = [], []
    for tables in frames.values():
        v = customer_vectors(tables["transactions"], config.as_of, FEATURES)
        parts.append(v.to_numpy())
        truth.append(by_id.loc[v.index].to_numpy())
    return parts, np.concatenate(truth), config.as_of


def cdnow(partners: int, seed: int = 3) -> list[np.ndarray]:
    from fedinsight.data.federation import PartitionSpec, load_federation

    data = next(iter(load_federation("cdnow", PartitionSpec(partners=1)).values()))
    x = customer_vectors(data.transactions, "1998-07-01", FEATURES).to_numpy()
    order = np.random.default_rng(seed).permutation(len(x))
    return [x[i] for i in np.array_split(order, partners)]


def measure(name: str, parts: list[np.ndarray], labels: np.ndarray | None, k: int, draws: int,
            progress: Progress, iterations: int = 5, k_range: str = "") -> dict[str, Any]:
    x = np.concatenate(parts)
    central = best_kmeans(x, k)
    base = kmeans.cost(x, central)
    out: dict[str, Any] = {"data": name, "customers": int(len(x)), "k": k, "partners": len(parts),
                           "centralized_cost": round(base, 3)}
    if labels is not None:
        out["centralized_ari"] = round(float(adjusted_rand_score(labels, kmeans.assign(x, central))), 4)
    task = progress.add_task(f"{name}: {len(EPSILONS) * draws} DP runs", total=len(EPSILONS) * draws)
    for epsilon in EPSILONS:
        options = SegmentsOptions(k=k, k_range=k_range, epsilon=epsilon, iterations=iterations, as_of="2000-01-01")
        ratios, aris, seconds, chosen = [], [], [], []
        for _ in range(draws):
            started = time.perf_counter()
            centres = federated_kmeans(parts, options)
            seconds.append(time.perf_counter() - started)
            chosen.append(len(centres))
            ratios.append(kmeans.cost(x, centres) / base)
            if labels is not None:
                aris.append(float(adjusted_rand_score(labels, kmeans.assign(x, centres))))
            progress.advance(task)
        row: dict[str, Any] = {"cost_ratio_median": round(float(np.median(ratios)), 4),
                               "cost_ratio_max": round(float(np.max(ratios)), 4),
                               "seconds_per_run": round(float(np.median(seconds)), 2)}
        if k_range:  # how often each k was chosen (the cost ratio is against non-private k-means at --k)
            row["k_chosen"] = {str(j): chosen.count(j) for j in sorted(set(chosen))}
        if aris:
            row.update({"ari_median": round(float(np.median(aris)), 4), "ari_min": round(float(np.min(aris)), 4)})
        out[f"epsilon_{epsilon:g}"] = row
    return out


def flower_run(customers: int, partners: int, k: int) -> dict[str, Any]:
    """Time ``fedinsight simulate segments`` (Flower's simulation engine) on planted partner folders."""
    with tempfile.TemporaryDirectory(prefix="seg-bench-") as tmp:
        root, out = Path(tmp) / "partners", Path(tmp) / "run"
        write_segments(root, SegmentsConfig(customers=customers, partners=partners))
        env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
               "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "RAY_USAGE_STATS_ENABLED": "0"}
        load = os.getloadavg()
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "fedinsight.cli", "simulate", "segments", "--dataset", str(root),
                               "--k", str(k), "--out", str(out)], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            return {"error": done.stderr[-2000:], "seconds": round(seconds, 1)}
        summary = json.loads((out / "summary.json").read_text())
        model = json.loads((out / "segments.json").read_text())
        labels = pd.read_csv(root / "ground_truth" / "segments.csv").set_index("customer_id")
        as_of = model["as_of"]
        vecs = [customer_vectors(pd.read_csv(f / "transactions.csv"), as_of, FEATURES)
                for f in sorted(root.glob("partner-*"))]
        x = pd.concat(vecs)
        ari = adjusted_rand_score(labels.loc[x.index, "segment"], kmeans.assign(x.to_numpy(), model["centres"]))
        base = summary.get("baselines", {})
        return {"customers": customers, "partners": partners, "epsilon": 1.0, "seconds": round(seconds, 1),
                "load_average_before": [round(v, 2) for v in load], "cost_ratio": base.get("cost_ratio"),
                "ari": round(float(ari), 4), "cores": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="planted 10,000 customers only, 3 draws")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--k-range", default="", help="e.g. 2-8: the task picks k (reports how often each k won)")
    parser.add_argument("--iterations", type=int, default=SegmentsOptions().iterations, help="Lloyd steps")
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--customers", default="10000,100000", help="comma-separated planted sizes")
    parser.add_argument("--cdnow-partners", type=int, default=3)
    parser.add_argument("--no-cdnow", action="store_true")
    parser.add_argument("--flower", action="store_true", help="also time one Flower run at the largest size")
    args = parser.parse_args(argv)
    draws = 3 if args.quick else args.draws
    sizes = [10_000] if args.quick else [int(s) for s in args.customers.split(",")]
    results = []
    with Progress(transient=True) as progress:
        for customers in sizes:
            parts, labels, _ = planted(customers, args.partners)
            results.append(measure(f"planted-{customers}", parts, labels, args.k, draws, progress, args.iterations,
                                   args.k_range))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        if not (args.quick or args.no_cdnow):
            results.append(measure("cdnow", cdnow(args.cdnow_partners), None, args.k, draws, progress,
                                   args.iterations, args.k_range))
    report: dict[str, Any] = {"benchmark": "segments", "draws": draws, "iterations": args.iterations,
                              "delta": SegmentsOptions().delta, "results": results}
    if args.flower:
        report["flower"] = flower_run(max(sizes), args.partners, args.k)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

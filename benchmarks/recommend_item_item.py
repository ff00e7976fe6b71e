"""Probe: can an item-item model (EASE) on a DP item co-occurrence matrix close issue 4's ε = 8 gap?

Why this exists: the BPR-MF federation under customer-level DP reaches ~0.84 × centralized at ε = 8
(docs/recommender.md). This script measures the other family a reader would ask about, on the same
MovieLens-100K leave-latest-out split and the same 99 sampled negatives:

* EASE (Steck 2019) on the pooled Gram matrix of customers' item sets, each customer's row scaled to
  unit L2 norm so one customer moves the Gram matrix by at most 1 in Frobenius norm; non-private;
* the same Gram matrix released once with Gaussian noise (OpenDP, calibrated to (ε, δ = 1/943) by
  dp_accounting) -- what a secure-aggregation sum with distributed noise would give the coordinator --
  on the full catalogue and restricted to the K most popular items (popularity taken exactly here,
  which favours the DP variant: a real run would spend budget on it), with eigenvalue truncation;
* EASE trained by each of 10 IID partners alone on its own customers (no release, no DP needed).

It prints JSON. Hyper-parameters are picked on the *test* items here (it is a feasibility probe, not a
model selection): the DP numbers are therefore optimistic, which only strengthens a negative result.

    .venv/bin/python benchmarks/recommend_item_item.py        # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epsilons", default="8,3,1")
    args = parser.parse_args()

    from fedinsight.data import load_movielens_100k
    from fedinsight.models.ranking import (
        Catalogue,
        evaluation_candidates,
        hit_and_ndcg,
        leave_latest_out,
        popularity_scores,
    )
    from fedinsight.privacy.mechanisms import gaussian, gaussian_noise_multiplier

    started = time.perf_counter()
    interactions, _, items = load_movielens_100k()
    catalogue = Catalogue.from_items(items)
    split = leave_latest_out(interactions, catalogue)
    n_items, n_customers = catalogue.num_items, split.num_customers
    candidates = evaluation_candidates(split, n_items, args.seed)
    history = np.zeros((n_customers, n_items))
    for c in range(n_customers):
        history[c, split.items_of(c)] = 1.0
    unit = history / np.linalg.norm(history, axis=1, keepdims=True)

    def evaluate(scores: np.ndarray) -> dict[str, float]:
        hit, ndcg = hit_and_ndcg(np.take_along_axis(scores, candidates, 1))
        return {"hr@10": round(float(hit.mean()), 4), "ndcg@10": round(float(ndcg.mean()), 4)}

    def ease(gram: np.ndarray, lam: float) -> np.ndarray:
        inverse = np.linalg.inv(gram + lam * np.eye(gram.shape[0]))
        weights = -inverse / np.diag(inverse)
        np.fill_diagonal(weights, 0.0)
        return weights

    def best(results: dict[float, dict[str, float]]) -> dict[str, object]:
        lam = max(results, key=lambda k: results[k]["hr@10"])
        return {"lambda": lam, **results[lam]}

    lambdas = (0.5, 2, 5, 10, 20, 50, 100, 200, 500)
    out: dict[str, object] = {"customers": n_customers, "items": n_items,
                              "popularity": evaluate(np.tile(popularity_scores(split, n_items), (n_customers, 1)))}
    gram = unit.T @ unit
    out["ease_pooled_non_private"] = best({lam: evaluate(history @ ease(gram, lam)) for lam in lambdas})

    rng = np.random.default_rng(args.seed)
    owner = rng.permutation(n_customers) % args.partners
    local = {}
    for lam in (0.5, 1, 2, 5):
        scores = np.zeros((n_customers, n_items))
        for k in range(args.partners):
            mine = owner == k
            scores[mine] = history[mine] @ ease(unit[mine].T @ unit[mine], lam)
        local[lam] = evaluate(scores)
    out["ease_each_partner_alone"] = best(local)

    popularity = history.sum(0)
    order = np.argsort(-popularity)
    delta = 1.0 / n_customers
    private: dict[str, object] = {}
    for eps in (float(e) for e in args.epsilons.split(",")):
        multiplier = gaussian_noise_multiplier(eps, delta)
        row: dict[str, object] = {"noise_multiplier": round(multiplier, 4)}
        for k_items in (300, 500, n_items):
            top = order[:k_items]
            sub = gram[np.ix_(top, top)]
            upper = np.triu_indices(k_items)
            # the upper triangle (with the diagonal) of a unit-norm customer's x xᵀ has L2 norm <= 1
            noisy_upper = gaussian(sub[upper], 1.0, multiplier).values
            noisy = np.zeros_like(sub)
            noisy[upper] = noisy_upper
            noisy = noisy + np.triu(noisy, 1).T
            values, vectors = np.linalg.eigh(noisy)
            keep = values > 2 * multiplier * math.sqrt(k_items)  # above the noise's spectral norm
            truncated = (vectors[:, keep] * values[keep]) @ vectors[:, keep].T
            for name, matrix in (("raw", noisy), ("truncated", truncated)):
                results = {}
                for lam in lambdas:
                    scores = np.full((n_customers, n_items), -1e6)
                    scores[:, top] = history[:, top] @ ease(matrix, lam)
                    rest = np.setdiff1d(np.arange(n_items), top)
                    scores[:, rest] += popularity[rest] * 1e-3  # outside the top K: by popularity, below
                    results[lam] = evaluate(scores)
                row[f"top{k_items}_{name}"] = {**best(results), "directions_kept": int(keep.sum())}
        private[f"epsilon_{eps:g}"] = row
    out["ease_dp_gram_release"] = private
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Synthetic customer-item interactions calibrated to MovieLens-100K, at any size (the recommender's scaling curve).

Why: MovieLens-100K has 943 customers, too few for customer-level DP to pay (docs/recommender.md, "Limits"); the
question "from how many customers does the federation pay?" needs the same kind of data at 10 k - 1 M customers.
Each customer ``u`` has a planted taste ``t_u`` (``rank`` dimensions), each item a profile ``v_i`` and a
popularity ``b_i = -skew * log(popularity rank)``; a customer's items are drawn without replacement with
probability proportional to ``exp(strength * t_u . v_i + b_i)`` (Gumbel top-k: exact, vectorised), their number
from a log-normal with MovieLens-100K's median (65) and mean (106), at least ``min_degree`` (20, as MovieLens
keeps). Order in time is random within a customer, over one year. :func:`degree_profile` states what a table
looks like (sizes, density, degree quantiles, how concentrated item popularity is), so the match can be reported
side by side with the real data. Deterministic in ``seed``; customers split evenly at random over the partners.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.planted import write_federation

MOVIELENS_MEDIAN_DEGREE, MOVIELENS_MEAN_DEGREE = 65.0, 106.0
"""MovieLens-100K's interactions per customer (943 customers, 100,000 ratings)."""
CHUNK = 2000  # customers scored at once: (2000 x items) float64
MAX_DEGREE_SHARE = 0.44  # MovieLens-100K: its most active customer rated 737 of 1,682 items


@dataclass(frozen=True)
class InteractionsConfig:
    """What to generate. Defaults: 10,000 customers over 10 partners and a 2,000-item catalogue."""

    customers: int = 10_000
    items: int = 2_000
    partners: int = 10
    rank: int = 8
    strength: float = 2.0  # how strongly tastes steer choices, against popularity
    skew: float = 1.4  # item popularity ~ rank^-skew: 1.4 matches MovieLens-100K's top-10 % share (0.43)
    median_degree: float = MOVIELENS_MEDIAN_DEGREE
    mean_degree: float = MOVIELENS_MEAN_DEGREE
    min_degree: int = 20
    seed: int = 0

    def check(self) -> None:
        if self.partners < 1 or self.customers < self.partners:
            raise ConfigError(f"need at least one customer per partner (got {self.customers} customers, "
                              f"{self.partners} partners)")
        if self.items < self.min_degree + 100:
            raise ConfigError(f"--items must be at least {self.min_degree + 100} (each customer needs "
                              f"{self.min_degree} items and the evaluation 99 unseen ones); got {self.items}")
        if not 0 < self.median_degree <= self.mean_degree:
            raise ConfigError("the median degree must be positive and at most the mean degree")


def _degrees(rng: np.random.Generator, config: InteractionsConfig) -> np.ndarray:
    """Log-normal with the configured median and mean, clipped to [min_degree, 44 % of the items]."""
    sigma = math.sqrt(2.0 * math.log(config.mean_degree / config.median_degree))
    raw = rng.lognormal(math.log(config.median_degree), sigma, size=config.customers)
    return np.clip(np.round(raw), config.min_degree, min(config.items - 100, round(MAX_DEGREE_SHARE * config.items))
                   ).astype(np.int64)


def planted(config: InteractionsConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ground truth: customer tastes (customers x rank), item profiles (items x rank), item log-popularity."""
    rng = np.random.default_rng([config.seed, 18])
    tastes = rng.standard_normal((config.customers, config.rank)) / math.sqrt(config.rank)
    profiles = rng.standard_normal((config.items, config.rank))
    popularity = -config.skew * np.log1p(rng.permutation(config.items))
    return tastes, profiles, popularity


def generate(config: InteractionsConfig, progress: Callable[[int, int], None] | None = None
             ) -> tuple[dict[str, dict[str, pd.DataFrame]], dict[str, Any]]:
    """Per partner its ``customers`` and ``interactions`` tables (and the shared ``items``), and the truth."""
    config.check()
    tastes, profiles, popularity = planted(config)
    rng = np.random.default_rng([config.seed, 19])
    degrees = _degrees(rng, config)
    owners, chosen = [], []
    for start in range(0, config.customers, CHUNK):
        stop = min(start + CHUNK, config.customers)
        logits = config.strength * tastes[start:stop] @ profiles.T + popularity
        keys = logits + rng.gumbel(size=logits.shape)
        order = np.argsort(-keys, axis=1)
        for r, u in enumerate(range(start, stop)):
            owners.append(np.full(degrees[u], u))
            chosen.append(order[r, :degrees[u]])
        if progress:
            progress(stop, config.customers)
    owner = np.concatenate(owners)
    item = np.concatenate(chosen)
    seconds = rng.integers(0, 365 * 86400, size=len(owner))
    timestamps = pd.Timestamp("2025-01-01") + pd.to_timedelta(seconds, unit="s")
    customer_ids = np.char.add("u", np.arange(config.customers).astype(str))
    item_ids = np.char.add("m", np.arange(config.items).astype(str))
    genres = np.char.add("taste-", np.argmax(profiles, axis=1).astype(str))
    items = pd.DataFrame({"item_id": item_ids, "title": np.char.add("Item ", item_ids), "genres": genres})
    interactions = pd.DataFrame({"customer_id": customer_ids[owner], "item_id": item_ids[item],
                                 "timestamp": timestamps})
    partner_of = rng.permutation(config.customers) % config.partners
    frames: dict[str, dict[str, pd.DataFrame]] = {}
    for k in range(config.partners):
        mine = np.flatnonzero(partner_of == k)
        name = f"partner-{k:02d}"
        frames[name] = {
            "customers": pd.DataFrame({"customer_id": customer_ids[mine], "consent": True}),
            "interactions": interactions.loc[np.isin(owner, mine)].sort_values(["customer_id", "timestamp"])
            .reset_index(drop=True),
            "items": items,
        }
    truth = {"config": asdict(config), "profile": degree_profile(interactions)}
    return frames, truth


def degree_profile(interactions: pd.DataFrame) -> dict[str, float]:
    """Sizes, density, customer and item degree quantiles, and the share of interactions on the top 10 % of items."""
    per_customer = interactions.groupby("customer_id").size().to_numpy()
    per_item = np.sort(interactions.groupby("item_id").size().to_numpy())[::-1]
    customers, items = len(per_customer), len(per_item)
    return {
        "customers": customers, "items": items, "interactions": len(interactions),
        "density": round(len(interactions) / (customers * items), 5),
        "customer_degree_min": int(per_customer.min()), "customer_degree_median": float(np.median(per_customer)),
        "customer_degree_mean": round(float(per_customer.mean()), 2), "customer_degree_max": int(per_customer.max()),
        "item_degree_median": float(np.median(per_item)), "item_degree_max": int(per_item.max()),
        "top10pct_items_share": round(float(per_item[:max(1, items // 10)].sum() / per_item.sum()), 4),
    }


def write_interactions(root: str | Path, config: InteractionsConfig) -> dict[str, Any]:
    """Write one folder per partner under ``root`` (CSV) and ``root/ground_truth.json``; return the truth."""
    frames, truth = generate(config)
    write_federation(root, frames, truth)
    return truth

"""Synthetic purchases with planted "bought together" pairs of known lift (ground truth for the baskets task).

Why a separate generator: the main synthetic retailer (:mod:`fedinsight.data.synth`) has six categories and no
planted co-purchase, so nothing in it says which pairs a market-basket analysis *should* find. Here each customer's
basket (the set of categories they buy in the window) is drawn as:

- every category ``c`` independently with its base probability ``p_c`` (a skewed spread, like shelf popularity);
- for each planted pair ``(a, b)``, with probability ``q`` the customer buys *both* (a bundle), on top. Most
  planted pairs are strong (lift >= 4); ``weak`` of them sit on the most popular categories with lift 1.1-1.3,
  so a ranking must tell a strong link from a mild one.

Planted pairs use disjoint categories, so every other pair is independent and a planted pair's lift is known in
closed form: ``P(a) = 1 - (1 - p_a)(1 - q)``, ``P(ab) = q + (1 - q) p_a p_b``. The task measures customers with at
least one purchase (probability ``B = 1 - prod(1 - p_c) prod(1 - q)``), so the truth is stated among them: support
``P(ab) / B`` and ``lift = B P(ab) / (P(a) P(b))``; an unrelated pair's lift there is ``B`` (about 0.92, not 1:
buying anything at all makes two unrelated purchases slightly less likely to share a basket). Each category in a
basket becomes 1 + Poisson(0.5) transaction rows at random times in the window. Customers split evenly (at random)
over the partners; everything is deterministic in ``seed``. The partner folders it writes are plain canonical tables
(``customers``, ``transactions``): a user's own mapped exports look the same once read through their mapping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.planted import write_federation

ROWS_EXTRA_MEAN = 0.5
"""Transaction rows per category in a basket: 1 + Poisson(this)."""


@dataclass(frozen=True)
class BasketsConfig:
    """What to generate (defaults: the baskets benchmark's 100,000 customers over 10 partners)."""

    customers: int = 100_000
    partners: int = 10
    categories: int = 60
    planted: int = 25
    weak: int = 5  # planted pairs of small lift (the rest are strong: the benchmark's top 20)
    seed: int = 0
    start: str = "2025-01-01"
    end: str = "2026-01-01"

    def check(self) -> None:
        if self.customers < self.partners or self.partners < 1:
            raise ConfigError(f"need at least one customer per partner (got {self.customers} customers, "
                              f"{self.partners} partners)")
        if self.categories < 2 * self.planted or self.planted < 0:
            raise ConfigError(f"{self.planted} planted pairs need at least {2 * self.planted} categories "
                              f"(got {self.categories}): planted pairs use distinct categories")


def category_names(count: int) -> list[str]:
    return [f"aisle {k + 1:02d}" for k in range(count)]


def plan(config: BasketsConfig) -> dict[str, Any]:
    """The planted truth: base probabilities, planted pairs with their bundle probability and exact lift."""
    config.check()
    rng = np.random.default_rng([config.seed, 1])
    names = category_names(config.categories)
    base = 0.01 + 0.07 * rng.random(config.categories) ** 2
    # weak pairs (lift about 1.1-1.3) on the most popular categories, strong ones (lift >= 4) on the others: the
    # strong ones are the planted "top" a benchmark looks for, with a clear gap to the rest
    popular = [int(c) for c in np.argsort(-base, kind="stable")]
    weak = min(config.weak, config.planted)
    strong = config.planted - weak
    others = [int(c) for c in rng.permutation(popular[2 * weak:])]
    chosen = popular[: 2 * weak] + others
    bundles = np.concatenate([np.full(weak, 0.002), np.linspace(0.025, 0.008, strong)])
    # the task measures customers with at least one purchase: P(non-empty basket) conditions every share
    nonempty = 1 - float(np.prod(1 - base) * np.prod(1 - bundles))
    pairs = []
    for k in range(config.planted):
        a, b = chosen[2 * k], chosen[2 * k + 1]
        q = float(bundles[k])
        p_a, p_b = 1 - (1 - base[a]) * (1 - q), 1 - (1 - base[b]) * (1 - q)
        p_ab = q + (1 - q) * base[a] * base[b]
        pairs.append({"items": sorted([names[a], names[b]]), "bundle": q, "support": p_ab / nonempty,
                      "lift": p_ab * nonempty / (p_a * p_b), "strong": k >= weak, "index": [a, b]})
    pairs.sort(key=lambda p: -p["lift"])
    return {"config": asdict(config), "categories": names, "base": base.tolist(), "pairs": pairs,
            "buyers_share": nonempty, "unrelated_lift": nonempty}


def generate(config: BasketsConfig) -> tuple[dict[str, dict[str, pd.DataFrame]], dict[str, Any]]:
    """``{partner: {"customers": ..., "transactions": ...}}`` and the planted truth (:func:`plan`)."""
    truth = plan(config)
    rng = np.random.default_rng([config.seed, 2])
    n, names = config.customers, truth["categories"]
    basket = rng.random((n, config.categories)) < np.asarray(truth["base"])[None, :]
    for pair in truth["pairs"]:
        bundle = rng.random(n) < pair["bundle"]
        for c in pair["index"]:
            basket[:, c] |= bundle
    cust, cat = np.nonzero(basket)
    rows = 1 + rng.poisson(ROWS_EXTRA_MEAN, cust.size)
    cust, cat = np.repeat(cust, rows), np.repeat(cat, rows)
    start, end = pd.Timestamp(config.start), pd.Timestamp(config.end)
    seconds = rng.integers(0, int((end - start).total_seconds()), cust.size)
    partner_of = rng.permutation(np.arange(n) % config.partners)
    ids = np.array([f"C{k:07d}" for k in range(n)])
    frames: dict[str, dict[str, pd.DataFrame]] = {}
    for p in range(config.partners):
        own = partner_of[cust] == p
        tx = pd.DataFrame({
            "transaction_id": [f"T{p:02d}{k:08d}" for k in range(int(own.sum()))],
            "customer_id": ids[cust[own]],
            "timestamp": (start + pd.to_timedelta(seconds[own], unit="s")).strftime("%Y-%m-%d %H:%M:%S"),
            "amount": np.round(rng.lognormal(3.0, 0.6, int(own.sum())), 2),
            "quantity": 1,
            "category": np.asarray(names, dtype=object)[cat[own]],
        })
        customers = pd.DataFrame({"customer_id": ids[partner_of == p], "consent": True})
        frames[f"partner-{p:02d}"] = {"customers": customers, "transactions": tx}
    return frames, truth


def write_baskets(root: str | Path, config: BasketsConfig) -> dict[str, Any]:
    """Write one folder per partner under ``root`` (CSV files) and ``root/ground_truth.json``; return the truth."""
    frames, truth = generate(config)
    write_federation(root, frames, truth)
    return truth

"""Planted heterogeneous treatment effects for the synthetic generator: the ``offers`` campaign.

Why a separate module: the uplift task needs data whose right answer (each customer's change in conversion
probability under each offer) is known, and that truth is a concept of its own, apart from the funnel campaigns
of :mod:`fedinsight.data.synth`. The generator calls :func:`offer_block` once per block of customers (with its
own random stream, so every other table stays byte-identical) when ``SynthConfig.offers`` is set.

The campaign, starting at the generator's ``cutoff`` and lasting :data:`OFFER_DAYS` days:

- every customer who signed up before the start is randomised 1/3 each to ``control`` (the hold-out: nothing
  sent), ``discount`` and ``gift``;
- base conversion (no offer) grows with the customer's purchase rate λ: ``0.03 + 0.12 (1 - exp(-λ / 12))``;
- the **value tier** is the customer's spend in the 365 days before the start (low < 300 <= mid < 1,200 <= high:
  the uplift task's default ``--tiers``);
- **price sensitivity** in [0, 1] falls with the customer's usual order (its mean purchase before the start; the
  segment's mean order without one), on a log scale from 1 at 20 to 0 at 120, plus noise: bargain hunters buy small
  baskets;
- uplift of ``discount`` = 0.25 x price sensitivity x (0.2 for the high tier, else 1): it moves price-sensitive
  customers and barely touches big spenders; uplift of ``gift`` = 0.01 + 0.03 (mid tier) + 0.11 (high tier): a
  loyalty gesture that works on valuable customers;
- declared costs per offer sent: discount 4.0, gift 3.0; the expected order value is the segment's mean order.

A converting customer's events are exposure -> click -> participate -> convert (hold-out customers get an
``exposure`` row too: it marks them as in the campaign's audience, arm ``control``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

OFFERS_CAMPAIGN = "offers"
CONTROL_ARM = "control"
OFFER_ARMS: tuple[str, ...] = ("discount", "gift")
ARMS: tuple[str, ...] = (CONTROL_ARM, *OFFER_ARMS)
OFFER_COSTS: dict[str, float] = {"discount": 4.0, "gift": 3.0}
OFFER_CHANNEL = "email"
OFFER_DAYS = 30
TIER_EDGES = (300.0, 1_200.0)
"""Expected yearly spend at which the mid and high value tiers start."""
TIERS: tuple[str, ...] = ("low", "mid", "high")

_DAY = 86_400


@dataclass(frozen=True)
class OfferBlock:
    """One block's offer-campaign rows and truth: ``events`` (customer index, stage index, arm index, time) and
    ``truth`` (per customer of the block: arrays named as the customer-truth columns)."""

    customer: np.ndarray
    stage: np.ndarray
    arm: np.ndarray
    time: np.ndarray
    truth: dict[str, np.ndarray]


def effects(lam: np.ndarray, spend_year: np.ndarray, price_sensitivity: np.ndarray) -> dict[str, np.ndarray]:
    """The planted truth for given traits: base conversion, tier index, and each offer's uplift."""
    tier = np.searchsorted(np.asarray(TIER_EDGES), spend_year, side="right")
    base = 0.03 + 0.12 * (1.0 - np.exp(-lam / 12.0))
    discount = 0.25 * price_sensitivity * np.where(tier == 2, 0.2, 1.0)
    gift = 0.01 + 0.03 * (tier == 1) + 0.11 * (tier == 2)
    return {"base": base, "tier": tier, "discount": discount, "gift": gift}


def price_sensitivity(rng: np.random.Generator, usual_order: np.ndarray) -> np.ndarray:
    """1 for a usual order of 20 or less, 0 from 120, log-linear between, plus noise (sd 0.05), in [0, 1]."""
    level = np.log(120.0 / np.maximum(usual_order, 1e-9)) / np.log(6.0)
    return np.clip(level + rng.normal(0.0, 0.05, usual_order.size), 0.0, 1.0)


def history(n: int, customer: np.ndarray, time: np.ndarray, amount: np.ndarray,
            start: int) -> tuple[np.ndarray, np.ndarray]:
    """Per customer of a block: spend in the 365 days before ``start``, and mean purchase before it (NaN: none)."""
    before = time < start
    recent = before & (time >= start - 365 * _DAY)
    spend = np.bincount(customer[recent], weights=amount[recent], minlength=n)
    count = np.bincount(customer[before], minlength=n)
    total = np.bincount(customer[before], weights=amount[before], minlength=n)
    return spend, np.where(count > 0, total / np.maximum(count, 1), np.nan)


def offer_block(rng: np.random.Generator, lam: np.ndarray, order_value: np.ndarray, signup: np.ndarray,
                start: int, end: int, hours: np.ndarray, spend_year: np.ndarray, usual_order: np.ndarray) -> OfferBlock:
    """Draw one block's campaign: arms, conversions and event times (``hours``: each customer's event hour;
    ``spend_year`` and ``usual_order`` from :func:`history`; ``order_value``: the segment's expected order)."""
    n = lam.size
    ps = price_sensitivity(rng, np.where(np.isnan(usual_order), order_value, usual_order))
    truth = effects(lam, spend_year, ps)
    eligible = signup < start
    arm = rng.integers(0, len(ARMS), n)
    uplift = np.where(arm == 1, truth["discount"], np.where(arm == 2, truth["gift"], 0.0))
    converted = eligible & (rng.random(n) < truth["base"] + uplift)
    days = max(1, min(OFFER_DAYS, (end - start) // _DAY))
    t0 = np.clip(start + rng.integers(0, days, n) * _DAY + hours * 3600 + rng.integers(0, 3600, n), start, end)
    rows_c, rows_s, rows_t = [], [], []
    for stage in range(4):  # exposure, click, participate, convert
        who = np.flatnonzero(eligible if stage == 0 else converted)
        rows_c.append(who)
        rows_s.append(np.full(who.size, stage))
        rows_t.append(np.minimum(t0[who] + stage * 3600, end))
    customer = np.concatenate(rows_c)
    return OfferBlock(customer, np.concatenate(rows_s), arm[customer], np.concatenate(rows_t), {
        "offer_eligible": eligible, "offer_arm": np.asarray(ARMS, dtype=object)[arm],
        "offer_converted": converted, "offer_base_conversion": truth["base"],
        "uplift_discount": truth["discount"], "uplift_gift": truth["gift"],
        "price_sensitivity": ps, "value_tier": np.asarray(TIERS, dtype=object)[truth["tier"]],
        "expected_order_value": order_value, "spend_365d_before_offer": spend_year,
    })


def best_offer(uplift: dict[str, np.ndarray], order_value: np.ndarray, costs: dict[str, float]) -> np.ndarray:
    """Each customer's best offer name by expected incremental value (uplift x order value - cost), or ``""``
    (none) when no offer's value is positive -- the same rule the uplift task's policy applies."""
    names = list(costs)
    values = np.stack([uplift[o] * order_value - costs[o] for o in names], axis=1)
    best = values.argmax(axis=1)
    chosen = np.asarray(names, dtype=object)[best]
    return np.where(values.max(axis=1) > 0, chosen, "")


def facts(start: str, end: str) -> dict[str, Any]:
    """The campaign's public description for ``ground_truth.json``."""
    return {"campaign": OFFERS_CAMPAIGN, "start": start, "end": end, "control_arm": CONTROL_ARM,
            "offer_arms": list(OFFER_ARMS), "costs": dict(OFFER_COSTS), "channel": OFFER_CHANNEL,
            "tier_edges_spend_365_days_before": list(TIER_EDGES),
            "mechanism": "base 0.03 + 0.12 (1 - exp(-λ/12)); price sensitivity log(120 / usual order) / log 6 + "
                         "N(0, 0.05) in [0, 1]; discount uplift 0.25 x price sensitivity (x 0.2 in the high tier); "
                         "gift uplift 0.01 + 0.03 mid + 0.11 high; per customer in ground_truth/customer_truth.parquet"}

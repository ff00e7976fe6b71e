"""The offer policy: for each customer, the offer with the largest expected incremental value, or none.

``value(offer) = predicted uplift x expected order value - cost of the offer`` (costs declared per offer in the
job). A customer gets the offer with the largest positive value; when no offer's value is positive, none (the
campaign would lose money on that customer). The expected order value is the customer's own mean order before
the campaign (capped by the job's public ``order-value-cap``) shrunk towards a public prior order value by a few
pseudo-orders (:func:`expected_order_value`). This runs on the partner (the uplift predictions
and order values never leave it); only the DP counts of the chosen offers by value tier do.
"""

from __future__ import annotations

import numpy as np

NONE = "none"


def expected_order_value(order_value: np.ndarray, orders: np.ndarray, cap: float, prior: float,
                         weight: float) -> np.ndarray:
    """``(orders x min(own mean order, cap) + weight x prior) / (orders + weight)``.

    Why shrink: a customer's own mean order is a noisy estimate of what its next order is worth (one or two
    purchases say little; a customer without purchases would otherwise be worth 0 and never get an offer), and the
    policy multiplies it with the uplift to weigh it against a cost. Measured on the planted synthetic campaign
    (docs/uplift.md): with the true uplift, the customer's own mean order reaches 0.83 of the planted policy's
    value and the shrunk one 0.99. The prior is public (a job option), never learnt from other customers, so one
    customer's data changes only its own choice and the policy counts keep their sensitivity of 1.
    """
    n = np.maximum(np.asarray(orders, dtype=float), 0.0)
    own = np.minimum(np.maximum(np.asarray(order_value, dtype=float), 0.0), cap)
    return (n * own + weight * min(prior, cap)) / np.maximum(n + weight, 1e-12)


def incremental_values(uplift: np.ndarray, order_value: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Expected incremental value of each offer for each customer (rows: customers, columns: offers)."""
    return np.asarray(uplift, dtype=float) * np.asarray(order_value, dtype=float)[:, None] - np.asarray(costs)[None]


def choose(uplift: np.ndarray, order_value: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Each customer's chosen offer: its column index + 1, or 0 for none (no offer's value is positive)."""
    values = incremental_values(uplift, order_value, costs)
    if values.shape[1] == 0:
        return np.zeros(values.shape[0], dtype=int)
    best = values.argmax(axis=1)
    return np.where(values.max(axis=1) > 0, best + 1, 0)


def tiers(spend_year: np.ndarray, edges: tuple[float, float]) -> np.ndarray:
    """Value tier of each customer: 0 low, 1 mid, 2 high (public spend thresholds)."""
    return np.searchsorted(np.asarray(edges, dtype=float), np.asarray(spend_year, dtype=float), side="right")


def counts(choice: np.ndarray, tier: np.ndarray, offers: int) -> np.ndarray:
    """Customers per (choice, tier) cell, flattened choice-major ((offers + 1) x 3): one cell per customer."""
    return np.bincount(np.asarray(choice) * 3 + np.asarray(tier), minlength=(offers + 1) * 3).astype(float)

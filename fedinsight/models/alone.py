"""What a partner can train alone, on its own customers only: an item-item model (EASE) and a BPR-MF.

Why these two: they are the models a partner would run if it never joined the federation, so they are
the bar the served model must clear ("joining never hurts", docs/recommender.md). On MovieLens-100K split
across 10 partners a partner's own item-item model beats every private federated model (issue 18), so the
bar is real. Nothing here is ever sent: partners fit them next to the federated model and blend
(:mod:`fedinsight.models.blend`).

* ``item-item``: EASE (Steck 2019) on the Gram matrix of the customers' item sets, each customer's row scaled
  to unit length (heavy customers do not dominate the co-occurrences); closed form, so a fit is repeatable
  and only its ``lam`` needs keeping. Above :data:`ITEM_ITEM_MAX_ITEMS` items its dense (items x items)
  inverse is too large for a partner's memory and the candidate is skipped.
* ``mf``: plain BPR-MF (:func:`fedinsight.models.recommender.fit_bpr`) on the partner's own customers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedinsight.core.errors import ConfigError
from fedinsight.models.ranking import InteractionSplit
from fedinsight.models.recommender import BPRConfig, ItemParams, fit_bpr

Scorer = Callable[[np.ndarray], np.ndarray]
"""Customer positions of a split -> (len, items) scores over the whole catalogue."""

ITEM_ITEM_MAX_ITEMS = 6000  # a dense float64 inverse of 6,000 x 6,000 is ~290 MB
ITEM_ITEM_LAMBDAS = (0.5, 2.0, 8.0)
"""EASE's ridge on unit-row Gram matrices of a few hundred customers: issue 18's probe found 0.5-5 best for a tenth
of MovieLens-100K; the grid is searched on each partner's validation customers."""
KINDS = ("item-item", "mf")


def history_matrix(split: InteractionSplit, num_items: int, rows: np.ndarray | None = None) -> np.ndarray:
    """(customers, items) 0/1 matrix of the training items of ``rows`` (default: every customer)."""
    rows = np.arange(split.num_customers) if rows is None else np.asarray(rows)
    out = np.zeros((len(rows), num_items), dtype=np.float32)
    for r, c in enumerate(rows):
        out[r, split.items_of(int(c))] = 1.0
    return out


def ease_weights(split: InteractionSplit, num_items: int, lam: float) -> np.ndarray:
    """EASE's item-item weights from the unit-normalised Gram matrix (zero diagonal), float32."""
    if num_items > ITEM_ITEM_MAX_ITEMS:
        raise ConfigError(f"an item-item model needs at most {ITEM_ITEM_MAX_ITEMS} items (got {num_items})")
    if not lam > 0:
        raise ConfigError(f"EASE's lambda must be positive (got {lam})")
    history = history_matrix(split, num_items).astype(np.float64)
    norms = np.linalg.norm(history, axis=1, keepdims=True)
    unit = history / np.maximum(norms, 1.0)
    gram = unit.T @ unit
    gram[np.diag_indices(num_items)] += lam
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


@dataclass
class AloneModel:
    """One partner-alone model fitted on a split: its kind, its setting and the way to score that split's customers.

    ``items`` and ``customer_embeddings`` hold an MF model's tables (what serving keeps in the vault);
    ``weights`` an item-item model's matrix (recomputed at serving from ``lam``: closed form).
    """

    kind: str
    lam: float = 0.0
    weights: np.ndarray | None = None
    items: ItemParams | None = None
    customer_embeddings: np.ndarray | None = None

    def scorer(self, split: InteractionSplit, num_items: int) -> Scorer:
        if self.kind == "item-item":
            assert self.weights is not None
            weights = self.weights
            return lambda rows: history_matrix(split, num_items, rows) @ weights
        assert self.items is not None and self.customer_embeddings is not None
        emb, items = self.customer_embeddings, self.items
        return lambda rows: emb[rows] @ items.embeddings.T + items.bias[None, :]


def fit_alone(split: InteractionSplit, num_items: int, kind: str, *, lam: float = 2.0, dim: int = 32,
              epochs: int = 50, seed: int | None = None) -> AloneModel:
    """Fit one alone-model on ``split``. ``seed=None`` (partners) draws MF's randomness from OS entropy."""
    if kind == "item-item":
        return AloneModel(kind, lam=lam, weights=ease_weights(split, num_items, lam))
    if kind != "mf":
        raise ConfigError(f"unknown alone model '{kind}' (expected one of {', '.join(KINDS)})")
    if seed is None:  # the item table's start too: nothing a coordinator knows seeds a partner's own model
        seed = int(np.random.SeedSequence().entropy % 2**31)  # type: ignore[operator]
    trainer, items = fit_bpr(split, num_items, BPRConfig(dim=dim), epochs, seed)
    return AloneModel(kind, items=items, customer_embeddings=trainer.customer_embeddings)


def candidates(split: InteractionSplit, num_items: int, *, dim: int = 32, epochs: int = 50,
               seed: int | None = None) -> dict[str, AloneModel]:
    """Every alone-model a partner tries: item-item at each lambda of the grid (when the catalogue allows) and MF."""
    out: dict[str, AloneModel] = {}
    if num_items <= ITEM_ITEM_MAX_ITEMS:
        for lam in ITEM_ITEM_LAMBDAS:
            out[f"item-item (lambda {lam:g})"] = fit_alone(split, num_items, "item-item", lam=lam)
    out["mf"] = fit_alone(split, num_items, "mf", dim=dim, epochs=epochs, seed=seed)
    return out

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

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from fedinsight.core.errors import ConfigError
from fedinsight.models.ranking import InteractionSplit
from fedinsight.models.recommender import BPRConfig, ItemParams, LocalTrainer, fit_bpr

Scorer = Callable[[np.ndarray], np.ndarray]
"""Customer positions of a split -> (len, items) scores over the whole catalogue."""

ITEM_ITEM_MAX_ITEMS = 6000  # a dense float64 inverse of 6,000 x 6,000 is ~290 MB
ITEM_ITEM_LAMBDAS = (0.5, 2.0, 8.0)
"""EASE's ridge on unit-row Gram matrices of a few hundred customers: issue 18's probe found 0.5-5 best for a tenth
of MovieLens-100K; the grid is searched on each partner's validation customers."""
KINDS = ("item-item", "mf")


def history_matrix(split: InteractionSplit, num_items: int, rows: np.ndarray | None = None) -> np.ndarray:
    """(customers, items) 0/1 matrix of the training items of ``rows`` (default: every customer), float32.

    One scatter for all rows (no Python loop per customer: at 10,000 validation customers the loop cost seconds)."""
    rows = np.arange(split.num_customers) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), num_items), dtype=np.float32)
    starts, ends = split.train_indptr[rows], split.train_indptr[rows + 1]
    sizes = ends - starts
    offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    out[np.repeat(np.arange(len(rows)), sizes), split.train_items[np.repeat(starts, sizes) + offsets]] = 1.0
    return out


def _check_ease(num_items: int, lams: tuple[float, ...]) -> None:
    if num_items > ITEM_ITEM_MAX_ITEMS:
        raise ConfigError(f"an item-item model needs at most {ITEM_ITEM_MAX_ITEMS} items (got {num_items})")
    for lam in lams:
        if not lam > 0:
            raise ConfigError(f"EASE's lambda must be positive (got {lam})")


def unit_gram(split: InteractionSplit, num_items: int) -> np.ndarray:
    """The Gram matrix of the customers' item sets, each customer's row scaled to unit length, float64."""
    history = history_matrix(split, num_items).astype(np.float64)
    unit = history / np.maximum(np.linalg.norm(history, axis=1, keepdims=True), 1.0)
    return unit.T @ unit


def _ease_from_inverse(inverse: np.ndarray) -> np.ndarray:
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def ease_weights(split: InteractionSplit, num_items: int, lam: float) -> np.ndarray:
    """EASE's item-item weights from the unit-normalised Gram matrix (zero diagonal), float32."""
    _check_ease(num_items, (lam,))
    gram = unit_gram(split, num_items)
    gram[np.diag_indices(num_items)] += lam
    return _ease_from_inverse(np.linalg.inv(gram))


def ease_weights_grid(split: InteractionSplit, num_items: int, lams: tuple[float, ...]) -> dict[float, np.ndarray]:
    """:func:`ease_weights` at every ``lam``, the Gram matrix built once (it was built once per lambda).

    An eigendecomposition shared by the lambdas was tried and dropped: ``eigh`` of a 2,000-item Gram matrix took
    longer than the three inverses it replaces."""
    _check_ease(num_items, lams)
    gram = unit_gram(split, num_items)
    diagonal = np.diag_indices(num_items)
    out = {}
    for lam in lams:
        ridged = gram.copy()
        ridged[diagonal] += lam
        out[lam] = _ease_from_inverse(np.linalg.inv(ridged))
    return out


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


REFIT_EPOCHS = 10
"""Epochs refitting a chosen MF on the partner's full split, warm-started from its validation-fold fit: the two splits
differ by one held-out interaction per customer, so 50 more epochs from scratch (a third of a partner's blend time)
bought nothing the warm start does not."""


def refit_alone(chosen: AloneModel, fold: InteractionSplit, split: InteractionSplit, num_items: int, *,
                dim: int = 32, epochs: int = REFIT_EPOCHS, seed: int | None = None) -> AloneModel:
    """The chosen alone-model refitted on the full ``split``: item-item in closed form at its lambda; MF from the
    tables it reached on the validation ``fold`` (customers absent from the fold start from a fresh embedding)."""
    if chosen.kind == "item-item":
        return fit_alone(split, num_items, "item-item", lam=chosen.lam)
    assert chosen.items is not None and chosen.customer_embeddings is not None
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**31)  # type: ignore[operator]
    config = BPRConfig(dim=dim, optimizer="adam")
    start = LocalTrainer(split, num_items, config, seed=seed).customer_embeddings
    assert start is not None
    at = {cid: c for c, cid in enumerate(fold.customer_ids)}
    known = np.array([at.get(cid, -1) for cid in split.customer_ids], dtype=np.int64)
    start[known >= 0] = chosen.customer_embeddings[known[known >= 0]]
    trainer = LocalTrainer(split, num_items, config, seed=seed, customer_embeddings=start)
    items = chosen.items.copy()
    for _ in range(epochs):
        items, _ = trainer.train(items, 1)
    return AloneModel("mf", items=items, customer_embeddings=trainer.customer_embeddings)


def stored_alone(record: Mapping[str, object], alone_items: np.ndarray | None, alone_embeddings: np.ndarray | None,
                 histories: InteractionSplit, num_items: int) -> AloneModel | None:
    """The alone-model a partner sealed at the end of a job (its blend record and, for MF, its tables), rebuilt for
    scoring: an item-item model is refitted in closed form from its lambda on ``histories``. ``None`` when the
    partner chose none (it did not blend). The one builder used by serving and by the simulation's
    per-partner evaluation, so both score the same model."""
    kind = record.get("alone")
    if kind is None:
        return None
    if kind == "mf":
        if alone_items is None or alone_embeddings is None:
            raise ConfigError("the customer state names an alone MF model but holds none: train the job again")
        return AloneModel("mf", items=ItemParams.from_matrix(alone_items), customer_embeddings=alone_embeddings)
    if kind == "item-item":
        lam = float(record["lambda"])  # type: ignore[arg-type]
        return AloneModel("item-item", lam=lam, weights=ease_weights(histories, num_items, lam))
    raise ConfigError(f"the customer state names an unknown alone model '{kind}': train the job again")


def candidates(split: InteractionSplit, num_items: int, *, dim: int = 32, epochs: int = 50,
               seed: int | None = None) -> dict[str, AloneModel]:
    """Every alone-model a partner tries: item-item at each lambda of the grid (when the catalogue allows) and MF."""
    out: dict[str, AloneModel] = {}
    if num_items <= ITEM_ITEM_MAX_ITEMS:
        for lam, weights in ease_weights_grid(split, num_items, ITEM_ITEM_LAMBDAS).items():
            out[f"item-item (lambda {lam:g})"] = AloneModel("item-item", lam=lam, weights=weights)
    out["mf"] = fit_alone(split, num_items, "mf", dim=dim, epochs=epochs, seed=seed)
    return out

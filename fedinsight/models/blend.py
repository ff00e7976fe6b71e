"""Joining never hurts: each partner serves a blend of the federated model and its own alone-model, with the
blend weight chosen on its own *validation* customers.

Why: with few customers per partner, a partner's own item-item model can beat every private federated model
(issue 18). A partner therefore scores its validation customers (each customer's next-latest interaction held
out, :func:`fedinsight.models.ranking.leave_latest_out` with ``skip_latest=1``; the test items are never
looked at) with the federated model and with every alone-model it can train (:mod:`fedinsight.models.alone`),
keeps the best alone-model, and picks the weight ``w`` of::

    served = w * z(federated scores) + (1 - w) * z(alone scores)

from :data:`WEIGHTS`, where ``z`` standardises each customer's scores over the catalogue (the two models'
scales differ; a per-customer z-score keeps each model's ranking and makes the weights comparable). Because
``w = 0`` (the alone-model itself) and ``w = 1`` (the federated model) are on the grid, the plain choice
(``margin`` 0) is at least as good as the better of the two *on the validation customers*, exactly. The task asks
for more (``fedinsight.tasks.recommend.blending.MARGIN``): a blend replaces the alone-model only when it wins by
more than a margin of standard errors, since on ~100 validation customers a small win is as often luck; then the
served model is the alone-model exactly whenever the evidence is thin, and may be below the federated model on
validation. All of it runs on the partner and nothing is sent: the choice is a function of customer data, so
releasing it would need a DP release.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedinsight.models.alone import Scorer
from fedinsight.models.ranking import TOP_K, InteractionSplit, hit_and_ndcg, sample_negatives

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
CHUNK = 512  # customers scored at once: (512 x items) float64 stays ~20 MB at 5,000 items


def standardize(scores: np.ndarray) -> np.ndarray:
    """Each row's z-score over its items (a constant row becomes all zeros)."""
    scores = np.asarray(scores, dtype=np.float64)
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


def blend(federated: np.ndarray, alone: np.ndarray, weight: float) -> np.ndarray:
    """``weight * z(federated) + (1 - weight) * z(alone)``, row by row."""
    if weight >= 1.0:
        return standardize(federated)
    if weight <= 0.0:
        return standardize(alone)
    return weight * standardize(federated) + (1.0 - weight) * standardize(alone)


def validation_candidates(validation: InteractionSplit, full: InteractionSplit, num_items: int, seed: int,
                          negatives: int = 99, rows: np.ndarray | None = None) -> np.ndarray:
    """(validation customers, 1 + negatives): the held-out item, then items the customer never touched at all
    (``full``'s training items and its *test* item excluded), so the test item plays no part in the choice.
    ``rows``: only these validation customers (positions), in that order (default: all)."""
    position = {cid: c for c, cid in enumerate(full.customer_ids)}
    rows = np.arange(validation.num_customers) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), 1 + negatives), dtype=np.int64)
    for r, c in enumerate(rows):
        c = int(c)
        cid = validation.customer_ids[c]
        seen = [validation.items_of(c), [validation.test_items[c]]]
        if cid in position:
            seen += [full.items_of(position[cid]), [full.test_items[position[cid]]]]
        out[r, 0] = validation.test_items[c]
        out[r, 1:] = sample_negatives(cid, np.unique(np.concatenate(seen)).astype(np.int64), num_items, seed,
                                      negatives)
    return out


def validation_sample(customers: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of at most ``size`` of ``customers`` validation customers (all of them when they are fewer),
    drawn with ``seed``.

    Why: scoring every validation customer over the whole catalogue grows with the partner (an item-item model's
    scores are a (customers x items) @ (items x items) product per candidate lambda); a choice between a handful of
    models is as steady on a few thousand customers (HR@10's standard error below 0.011) as on all of them."""
    if customers <= size:
        return np.arange(customers)
    return np.sort(np.random.default_rng([seed, 18]).choice(customers, size=size, replace=False))


def candidate_scores(scorer: Scorer, candidates: np.ndarray) -> np.ndarray:
    """Each customer's standardised scores (over the whole catalogue) at its candidate items."""
    out = np.empty(candidates.shape)
    for start in range(0, len(candidates), CHUNK):
        rows = np.arange(start, min(start + CHUNK, len(candidates)))
        out[rows] = np.take_along_axis(standardize(scorer(rows)), candidates[rows], axis=1)
    return out


@dataclass(frozen=True)
class BlendChoice:
    """What a partner chose on its validation customers, and the exact validation HR@k / NDCG@k behind it."""

    weight: float
    alone: str  # the name of the best alone-model on validation
    customers: int
    validation: dict[str, tuple[float, float]] = field(default_factory=dict)  # model -> (HR@k, NDCG@k)

    @property
    def served(self) -> tuple[float, float]:
        return self.validation[f"blend {self.weight:g}"]


def _metrics(cand_scores: np.ndarray, k: int) -> tuple[float, float]:
    hr, ndcg = hit_and_ndcg(cand_scores, k)
    return float(hr.mean()), float(ndcg.mean())


Fold = tuple[np.ndarray, Scorer, dict[str, Scorer]]
"""One validation fold: its candidates, the federated model's scorer and every alone-model's scorer on it."""


def choose(candidates: np.ndarray, federated: Scorer, alones: dict[str, Scorer], *, k: int = TOP_K,
           weights: tuple[float, ...] = WEIGHTS) -> BlendChoice:
    """:func:`choose_folds` on one fold."""
    return choose_folds([(candidates, federated, alones)], k=k, weights=weights)


def clustered_se(diff: np.ndarray, customers: np.ndarray) -> float:
    """Standard error of the mean of the per-row ``diff`` when rows of the same customer (one per fold) form one
    cluster: a customer's folds share its tastes, so they are not independent draws (``inf`` below two customers)."""
    diff = np.asarray(diff, dtype=np.float64)
    _, inverse = np.unique(np.asarray(customers), return_inverse=True)
    counts = np.bincount(inverse)
    if len(counts) < 2:
        return float("inf")
    residual = np.bincount(inverse, weights=diff) - diff.mean() * counts  # per customer: its rows' sum minus its share
    g = len(counts)
    return float(np.sqrt(g / (g - 1) * (residual ** 2).sum()) / len(diff))


def choose_folds(folds: list[Fold], *, k: int = TOP_K, weights: tuple[float, ...] = WEIGHTS,
                 customers: list[np.ndarray] | None = None, margin: float = 0.0) -> BlendChoice:
    """The best alone-model, then the best blend weight with the federated model, over every fold's customers.

    Several folds (the next-latest and the one before held out) halve the choice's sampling noise: a partner has
    few customers. Ranked by HR@k, then NDCG@k; among equal results the larger federated weight wins (the
    federation's model generalises from more customers). Every fold must name the same non-empty alone-models.

    ``margin`` > 0 (with ``customers``, each fold's customer ids row by row): the alone-model is kept unless the chosen
    blend beats it on validation HR@k by more than ``margin`` standard errors of the paired per-customer difference
    (:func:`clustered_se`).
    """
    if margin > 0 and customers is None:  # the margin's standard error is clustered by customer
        raise ValueError("choose_folds(margin > 0) needs each fold's customer ids (customers=...)")
    names = list(folds[0][2]) if folds else []
    if not names or any(list(fold[2]) != names for fold in folds):
        raise ValueError("choose_folds() needs the same, non-empty alone-models in every fold")
    validation: dict[str, tuple[float, float]] = {}
    alone_scores = {name: np.vstack([candidate_scores(fold[2][name], fold[0]) for fold in folds]) for name in names}
    for name in names:
        validation[name] = _metrics(alone_scores[name], k)
    best_alone = max(names, key=lambda name: validation[name])
    fed = np.vstack([candidate_scores(fold[1], fold[0]) for fold in folds])
    validation["federated"] = _metrics(fed, k)
    best: tuple[tuple[float, float, float], float] | None = None
    for w in weights:
        mixed = w * fed + (1.0 - w) * alone_scores[best_alone]  # standardised already: the same as blend()
        validation[f"blend {w:g}"] = _metrics(mixed, k)
        key = (*validation[f"blend {w:g}"], w)
        if best is None or key > best[0]:
            best = (key, w)
    assert best is not None
    weight = best[1]
    if margin > 0 and weight > 0 and customers is not None:  # (customers given: checked above)
        gain = (hit_and_ndcg(weight * fed + (1.0 - weight) * alone_scores[best_alone], k)[0]
                - hit_and_ndcg(alone_scores[best_alone], k)[0])
        if gain.mean() <= margin * clustered_se(gain, np.concatenate(customers)):
            weight = 0.0
    return BlendChoice(weight=weight, alone=best_alone, customers=len(fed), validation=validation)

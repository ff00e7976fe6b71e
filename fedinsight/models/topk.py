"""Vectorised top-k serving: many customers' lists from one score matrix, seen items excluded.

Why a module of its own: serving a partner's whole customer base one customer at a time re-did, per
customer, what is the same for all of them (the exposure median, the item table, Python-level sorting of
the whole catalogue). Here a batch of B customers is one (B x items) score matrix -- one matrix product
upstream -- where seen items are masked with one fancy-indexed assignment and the top k are found with
``argpartition`` (linear in the catalogue) and only those k sorted. The exploration share and its
eligibility mask (:func:`fedinsight.models.ranking.exploration_mask`) are computed for the whole batch
with the same rules, so a customer served alone (a batch of one) gets the same list as in a batch.

Ties: within the k chosen items, equal scores are ordered by catalogue position; at the cut itself
``argpartition`` picks among equal scores. Popularity-based lists therefore break ties before they get
here (:mod:`fedinsight.tasks.recommend.segments` adds a sub-integer tie-breaker to integer counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedinsight.models.ranking import explore_slots


@dataclass(frozen=True)
class Lists:
    """Ranked lists of a batch: ``items[b, r]`` is customer b's item at rank r (-1: no item left to serve),
    ``scores`` the scores the ranking used, ``exploring[b, r]`` whether the slot is an exploration pick."""

    items: np.ndarray  # (B, k) int64
    scores: np.ndarray  # (B, k) float
    exploring: np.ndarray  # (B, k) bool


def csr_rows(indptr: np.ndarray) -> np.ndarray:
    """The row of every entry of a CSR structure (``indptr`` of length B + 1)."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the ``k`` highest scores, best first (ties in the chosen k: lower index first)."""
    n = scores.shape[1]
    k = min(k, n)
    if k == 0:
        return np.empty((len(scores), 0), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(scores), 1))
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=-1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def exploration_masks(attributes: np.ndarray, exposure: np.ndarray, seen_indptr: np.ndarray,
                      seen_items: np.ndarray, *, top: int = 2, tail_quantile: float = 0.5) -> np.ndarray:
    """(B, items) bool: :func:`fedinsight.models.ranking.exploration_mask` for every customer of a batch.

    An item is eligible when it is below the median exposure, or -- for a customer whose history has
    attribute values -- shares none of the customer's ``top`` most frequent values.
    """
    batch = len(seen_indptr) - 1
    tail = exposure < np.quantile(exposure, tail_quantile)
    if attributes.shape[1] == 0 or len(seen_items) == 0:
        return np.broadcast_to(tail, (batch, len(tail)))
    counts = np.zeros((batch, attributes.shape[1]))
    np.add.at(counts, csr_rows(seen_indptr), attributes[seen_items].astype(np.float64))
    order = np.argsort(-counts, axis=1, kind="stable")[:, :top]
    taste = np.zeros(counts.shape, dtype=bool)
    np.put_along_axis(taste, order, np.take_along_axis(counts, order, axis=1) > 0, axis=1)
    outside = (taste.astype(np.float32) @ attributes.T.astype(np.float32)) == 0
    return tail[None, :] | (outside & taste.any(axis=1)[:, None])


def rank_batch(scores: np.ndarray, seen_indptr: np.ndarray, seen_items: np.ndarray, k: int, share: float = 0.0,
               eligible: np.ndarray | None = None) -> Lists:
    """Top-``k`` lists of a (B, items) score matrix with each customer's seen items excluded.

    ``seen_indptr``/``seen_items``: the batch's histories as CSR (catalogue indices). With ``share`` > 0 the
    last ``explore_slots(k, share)`` slots hold the best-scoring ``eligible`` items not already listed, and
    fall back to score order when too few are eligible (as
    :func:`fedinsight.models.ranking.rerank_with_exploration`). ``scores`` is modified in place.
    """
    rows = csr_rows(seen_indptr)
    scores[rows, seen_items] = -np.inf
    e = explore_slots(k, share) if share > 0 else 0
    head = top_k(scores, k - e)
    exploring = np.zeros((len(scores), k), dtype=bool)
    if e == 0 or eligible is None:
        items = top_k(scores, k) if e else head
        return _finish(items, scores, exploring)
    head_scores = np.take_along_axis(scores, head, axis=1)
    np.put_along_axis(scores, head, -np.inf, axis=1)
    candidates = np.where(eligible, scores, -np.inf)
    picks = top_k(candidates, e)
    found = np.take_along_axis(candidates, picks, axis=1) > -np.inf
    for b in np.flatnonzero(~found.all(axis=1)):  # too few eligible items left: fill by score
        mine = picks[b, found[b]]
        rest = scores[b].copy()
        rest[mine] = -np.inf
        picks[b] = np.concatenate([mine, top_k(rest[None, :], e - len(mine))[0]])
    pick_scores = np.take_along_axis(scores, picks, axis=1)
    np.put_along_axis(scores, head, head_scores, axis=1)  # restore: the caller may read scores of listed items
    exploring[:, k - e:] = found
    return _finish(np.concatenate([head, picks], axis=1), scores, exploring,
                   np.concatenate([head_scores, pick_scores], axis=1))


def _finish(items: np.ndarray, scores: np.ndarray, exploring: np.ndarray,
            values: np.ndarray | None = None) -> Lists:
    values = np.take_along_axis(scores, items, axis=1) if values is None else values
    empty = ~np.isfinite(values)  # nothing left to serve (the customer has seen almost the whole catalogue)
    return Lists(np.where(empty, -1, items), np.where(empty, np.nan, values), exploring & ~empty)

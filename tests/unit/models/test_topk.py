"""Vectorised top-k serving gives, for every customer of a batch, the list the one-customer rules give."""

from __future__ import annotations

import numpy as np
import pytest

from fedinsight.models.ranking import Catalogue, exploration_mask, rerank_with_exploration
from fedinsight.models.topk import exploration_masks, rank_batch, top_k


def _histories(rng: np.random.Generator, customers: int, items: int) -> tuple[np.ndarray, list[np.ndarray]]:
    seen = [np.sort(rng.choice(items, size=rng.integers(0, 12), replace=False)) for _ in range(customers)]
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in seen])]).astype(np.int64)
    return indptr, seen


@pytest.mark.parametrize(("share", "genres"), [(0.0, True), (0.2, True), (0.4, False), (0.2, None)])
def test_a_batch_gives_each_customer_the_one_customer_list(share, genres):
    rng = np.random.default_rng(3)
    items, customers, k = 60, 40, 10
    values = None if genres is None else [("A|B" if i % 3 == 0 else "C") if genres else "" for i in range(items)]
    catalogue = Catalogue.from_ids([f"i{j:02d}" for j in range(items)], values)
    scores = rng.standard_normal((customers, items)).astype(np.float32)
    exposure = rng.standard_normal(items).astype(np.float32)
    indptr, seen = _histories(rng, customers, items)
    flat = np.concatenate(seen).astype(np.int64)
    eligible = exploration_masks(catalogue.attributes, exposure, indptr, flat) if share else None
    lists = rank_batch(scores.copy(), indptr, flat, k, share, eligible)
    for c in range(customers):
        mask = exploration_mask(catalogue.attributes, exposure, seen[c])
        if share:
            assert (eligible[c] == mask).all()
        pool = np.setdiff1d(np.arange(items), seen[c])
        expected = rerank_with_exploration(scores[c, pool], pool, mask, k, share)
        assert list(lists.items[c]) == list(expected)
        assert not set(lists.items[c]) & set(seen[c])
        assert np.allclose(lists.scores[c], scores[c, expected])
        explored = lists.exploring[c]
        assert not explored[: k - (2 if share == 0.2 else 4 if share else 0)].any()
        assert (explored <= mask[lists.items[c]]).all()


def test_top_k_orders_ties_by_position_and_a_short_catalogue_leaves_empty_slots():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert list(top_k(scores, 3)[0]) == [1, 2, 4]
    lists = rank_batch(scores.copy(), np.array([0, 3]), np.array([0, 1, 2]), 4)
    assert list(lists.items[0]) == [4, 3, -1, -1] and np.isnan(lists.scores[0, 2:]).all()

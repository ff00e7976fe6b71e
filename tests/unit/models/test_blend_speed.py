"""The faster blend choice (issue 18's slow final evaluation) chooses what the old computation chose.

The old computation is written out here as it was before the speed-up: a Python loop per customer building the
history matrix, one Gram matrix and one inverse per EASE lambda, every validation customer scored. The new one
builds the Gram matrix once, scatters the histories in one step and scores a sample of at most
``VALIDATION_SAMPLE`` validation customers (all of them on this small partner). Everything is exact (fixed seeds,
no DP noise), so the choice must be the same and the validation metrics equal to float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedinsight.models import alone as alone_module
from fedinsight.models.alone import (
    ITEM_ITEM_LAMBDAS,
    AloneModel,
    ease_weights_grid,
    fit_alone,
    history_matrix,
    refit_alone,
    stored_alone,
)
from fedinsight.models.blend import choose_folds, validation_candidates
from fedinsight.models.ranking import InteractionSplit, leave_latest_out
from fedinsight.models.recommender import BPRConfig, ItemParams
from fedinsight.tasks.recommend import blending
from fedinsight.tasks.recommend.blending import ALONE_EPOCHS, choose_on_validation, federated_on
from tests.unit.models.test_blend import _planted


def _old_history(split: InteractionSplit, n: int, rows: np.ndarray | None = None) -> np.ndarray:
    rows = np.arange(split.num_customers) if rows is None else np.asarray(rows)
    out = np.zeros((len(rows), n), dtype=np.float32)
    for r, c in enumerate(rows):
        out[r, split.items_of(int(c))] = 1.0
    return out


def _old_ease(split: InteractionSplit, n: int, lam: float) -> np.ndarray:
    history = _old_history(split, n).astype(np.float64)
    unit = history / np.maximum(np.linalg.norm(history, axis=1, keepdims=True), 1.0)
    gram = unit.T @ unit
    gram[np.diag_indices(n)] += lam
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def _old_choice(full, fold, n, items, cfg, *, personalize, eval_seed, seed):
    """choose_on_validation() as it was: every customer scored, EASE one inverse per lambda."""
    cands = validation_candidates(fold, full, n, eval_seed)
    trainer, fed_items = federated_on(fold, n, items, cfg, personalize, seed)
    alones = {}
    for lam in ITEM_ITEM_LAMBDAS:
        weights = _old_ease(fold, n, lam)
        alones[f"item-item (lambda {lam:g})"] = lambda rows, w=weights: _old_history(fold, n, rows) @ w
    mf = fit_alone(fold, n, "mf", dim=cfg.dim, epochs=ALONE_EPOCHS, seed=seed)
    alones["mf"] = mf.scorer(fold, n)
    return choose_folds([(cands, lambda rows: trainer.scores(fed_items, rows), alones)],
                        customers=[np.asarray(fold.customer_ids)], margin=blending.MARGIN)


@pytest.mark.parametrize("table_seed, personalize", [(1, 0), (2, 3)])
def test_the_faster_choice_is_the_old_choice_on_a_small_partner(table_seed, personalize):
    frame, catalogue = _planted()
    n = catalogue.num_items
    full = leave_latest_out(frame, catalogue)
    fold = leave_latest_out(frame, catalogue, skip_latest=1)
    cfg = BPRConfig(dim=8)
    items = ItemParams.init(n, 8, seed=table_seed)
    assert fold.num_customers < blending.VALIDATION_SAMPLE  # small enough that every customer is scored
    new, _ = choose_on_validation(full, [fold], n, items, cfg, personalize=personalize, eval_seed=0, seed=5)
    old = _old_choice(full, fold, n, items, cfg, personalize=personalize, eval_seed=0, seed=5)
    assert (new.weight, new.alone, new.customers) == (old.weight, old.alone, old.customers)
    assert new.validation.keys() == old.validation.keys()
    for model, (hr, ndcg) in old.validation.items():
        assert new.validation[model] == pytest.approx((hr, ndcg), abs=1e-12), model


def test_a_sampled_choice_scores_exactly_the_sampled_customers(monkeypatch):
    """With fewer sampled customers than the fold holds, each model's validation HR/NDCG is the old computation's
    restricted to the sampled customers: the sample's positions map back to the right fold customers."""
    frame, catalogue = _planted()
    n = catalogue.num_items
    full = leave_latest_out(frame, catalogue)
    fold = leave_latest_out(frame, catalogue, skip_latest=1)
    cfg = BPRConfig(dim=8)
    items = ItemParams.init(n, 8, seed=1)
    monkeypatch.setattr(blending, "VALIDATION_SAMPLE", 30)
    new, _ = choose_on_validation(full, [fold], n, items, cfg, personalize=0, eval_seed=0, seed=5)
    assert new.customers == 30
    rows = np.sort(np.random.default_rng([0, 18]).choice(fold.num_customers, size=30, replace=False))
    cands = validation_candidates(fold, full, n, 0)[rows]
    weights = _old_ease(fold, n, 2.0)
    from fedinsight.models.blend import candidate_scores
    from fedinsight.models.ranking import hit_and_ndcg

    scores = candidate_scores(lambda r: _old_history(fold, n, rows[r]) @ weights, cands)
    hr, ndcg = hit_and_ndcg(scores)
    assert new.validation["item-item (lambda 2)"] == pytest.approx((hr.mean(), ndcg.mean()), abs=1e-12)


def test_history_matrix_and_the_ease_grid_equal_their_one_by_one_versions():
    frame, catalogue = _planted()
    n = catalogue.num_items
    split = leave_latest_out(frame, catalogue)
    rows = np.array([5, 0, 17, 5])
    assert np.array_equal(history_matrix(split, n, rows), _old_history(split, n, rows))
    assert np.array_equal(history_matrix(split, n), _old_history(split, n))
    for lam, weights in ease_weights_grid(split, n, ITEM_ITEM_LAMBDAS).items():
        np.testing.assert_allclose(weights, _old_ease(split, n, lam), rtol=1e-5, atol=1e-6)


def test_a_chosen_mf_is_refitted_from_its_validation_fit_and_rebuilt_from_the_vault_arrays():
    frame, catalogue = _planted()
    n = catalogue.num_items
    full = leave_latest_out(frame, catalogue)
    fold = leave_latest_out(frame, catalogue, skip_latest=1)
    chosen = fit_alone(fold, n, "mf", dim=8, epochs=3, seed=4)
    refit = refit_alone(chosen, fold, full, n, dim=8, epochs=2, seed=4)
    assert refit.kind == "mf" and refit.customer_embeddings.shape == (full.num_customers, 8)
    assert not np.array_equal(refit.items.embeddings, chosen.items.embeddings)  # it trained on the full split
    stored = stored_alone({"weight": 0.5, "alone": "mf"}, refit.items.as_matrix(), refit.customer_embeddings, full, n)
    rows = np.arange(4)
    np.testing.assert_allclose(stored.scorer(full, n)(rows), refit.scorer(full, n)(rows), rtol=1e-6)
    ease = stored_alone({"weight": 0.25, "alone": "item-item", "lambda": 2.0}, None, None, full, n)
    assert isinstance(ease, AloneModel) and np.array_equal(ease.weights, alone_module.ease_weights(full, n, 2.0))
    assert stored_alone({"weight": 1.0, "alone": None}, None, None, full, n) is None

"""BPR-MF learns planted taste groups, with and without customer-level DP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.models.ranking import Catalogue, evaluate_ranking, leave_latest_out, popularity_scores
from fedinsight.models.recommender import BPRConfig, DPConfig, ItemParams, LocalTrainer, fit_bpr


@pytest.fixture(scope="module")
def planted():
    """Two taste groups with disjoint pools of 20 items each; 100 more catalogue items nobody touches.
    Within a group every item is equally popular, so popularity cannot tell the groups apart."""
    rng = np.random.default_rng(0)
    rows = []
    for c in range(160):
        pool = np.arange(20) + (0 if c % 2 == 0 else 20)
        for t, item in enumerate(rng.choice(pool, size=8, replace=False)):
            rows.append((f"c{c}", f"i{item:03d}", pd.Timestamp("2020-01-01") + pd.Timedelta(days=t)))
    frame = pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp"])
    catalogue = Catalogue.from_ids([f"i{j:03d}" for j in range(140)])
    return leave_latest_out(frame, catalogue), catalogue


def _hr(split, catalogue, score_rows, exposure) -> float:
    totals = evaluate_ranking(split, catalogue, score_rows, exposure, seed=0, share=0.0)
    return totals.metrics(share=0.0)["hr@10"]


def test_bpr_learns_the_taste_groups_popularity_cannot_see(planted):
    split, catalogue = planted
    pop = popularity_scores(split, catalogue.num_items)
    pop_hr = _hr(split, catalogue, lambda rows: np.tile(pop, (len(rows), 1)), pop)
    trainer, items = fit_bpr(split, catalogue.num_items, BPRConfig(dim=8, lr=0.05, customer_lr=0.05), 30, seed=0)
    bpr_hr = _hr(split, catalogue, lambda rows: trainer.scores(items, rows), items.bias)
    assert bpr_hr > 0.7 and bpr_hr > pop_hr + 0.2


def test_customer_level_dp_training_still_learns_with_little_noise(planted):
    split, catalogue = planted
    trainer = LocalTrainer(split, catalogue.num_items, BPRConfig(dim=8, dp_lr=2.0, optimizer="sgd"), seed=0)
    items = ItemParams.init(catalogue.num_items, 8, seed=0)
    dp = DPConfig(noise_multiplier=0.3, clip=1.0, sample_rate=0.5)
    for _ in range(40):
        items, stats = trainer.train(items, 1, dp)
    assert stats.steps == 2 and stats.clipped_fraction > 0  # every customer's update was bounded
    hr = _hr(split, catalogue, lambda rows: trainer.scores(items, rows), items.bias)
    assert hr > 0.6


def test_stored_customer_embeddings_must_match_the_data(planted):
    split, catalogue = planted
    with pytest.raises(ConfigError, match="customer embeddings have shape"):
        LocalTrainer(split, catalogue.num_items, BPRConfig(dim=8), customer_embeddings=np.zeros((3, 8), np.float32))
    trainer = LocalTrainer(split, catalogue.num_items, BPRConfig(dim=8))
    with pytest.raises(ConfigError, match="item parameters are"):
        trainer.train(ItemParams.init(catalogue.num_items, 4, seed=0), 1)


def test_without_a_seed_batches_and_negatives_come_from_os_entropy(planted):
    """A partner's trainer (no seed) draws different Poisson batches and negatives every time, even for the
    same data; only an explicit seed (baselines, tests) repeats them -- which shows the check can see it."""
    split, catalogue = planted
    dp = DPConfig(noise_multiplier=1.0, sample_rate=0.3)
    config = BPRConfig(dim=8)

    def draws(trainer: LocalTrainer) -> tuple[list[np.ndarray], np.ndarray]:
        batches = trainer._batches(2, dp)
        return batches, trainer._negatives(np.arange(split.num_customers))

    (b1, n1), (b2, n2) = draws(LocalTrainer(split, catalogue.num_items, config)), draws(
        LocalTrainer(split, catalogue.num_items, config))
    assert any(not np.array_equal(x, y) for x, y in zip(b1, b2, strict=True))
    assert not np.array_equal(n1, n2)
    (s1, m1), (s2, m2) = (draws(LocalTrainer(split, catalogue.num_items, config, seed=5)) for _ in range(2))
    assert all(np.array_equal(x, y) for x, y in zip(s1, s2, strict=True)) and np.array_equal(m1, m2)

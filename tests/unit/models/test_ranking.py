"""The ranking protocol on hand-built cases whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.models.ranking import (
    Catalogue,
    evaluate_ranking,
    evaluation_candidates,
    exploration_mask,
    explore_slots,
    hit_and_ndcg,
    intra_list_diversity,
    leave_latest_out,
    popularity_scores,
    rerank_with_exploration,
    sample_negatives,
    tie_key,
    top_k_lists,
)


def _frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp"]).assign(
        timestamp=lambda f: pd.to_datetime(f["timestamp"])
    )


def _catalogue(n: int, genres: list[str] | None = None) -> Catalogue:
    return Catalogue.from_ids([f"i{j:03d}" for j in range(n)], genres)


def test_hit_and_ndcg_known_ranks_and_ties():
    hr, ndcg = hit_and_ndcg(np.array([[5.0, 1, 2, 3]]), k=10)
    assert hr[0] == 1.0 and ndcg[0] == 1.0
    scores = np.array([[1.0, 5, 4, 3, 2]])  # test item is fifth: rank 4
    hr, ndcg = hit_and_ndcg(scores, k=4)
    assert hr[0] == 0.0 and ndcg[0] == 0.0
    hr, ndcg = hit_and_ndcg(scores, k=5)
    assert hr[0] == 1.0 and ndcg[0] == pytest.approx(1 / math.log2(6))
    # one tie with the test item at the top: it is first or second with probability 1/2 each
    hr, ndcg = hit_and_ndcg(np.array([[1.0, 1.0, 0.0, 0.0]]), k=1)
    assert hr[0] == pytest.approx(0.5) and ndcg[0] == pytest.approx(0.5)
    hr, ndcg = hit_and_ndcg(np.array([[1.0, 1.0, 0.0, 0.0]]), k=2)
    assert hr[0] == pytest.approx(1.0) and ndcg[0] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    # a model that scores everything equal gets exactly k / (1 + negatives)
    hr, _ = hit_and_ndcg(np.zeros((3, 100)), k=10)
    assert np.allclose(hr, 0.1)


def test_split_takes_the_latest_with_the_tie_key_for_ties_and_collapses_repeats():
    cat = _catalogue(5)
    rows = [
        ("a", "i000", "2020-01-01"), ("a", "i001", "2020-01-03"), ("a", "i002", "2020-01-03"),  # a tie at the latest
        ("b", "i003", "2020-01-02"), ("b", "i003", "2020-01-05"), ("b", "i004", "2020-01-04"),  # repeat of i003
        ("c", "i000", "2020-01-01"),  # a single interaction: no training data
        ("c", "zzz", "2020-01-02"),  # not in the catalogue
    ]
    # the tie goes to the larger MD5 of "<day>/<item>", whichever row comes last: i001 here (checked, not assumed)
    day = int(np.datetime64("2020-01-03", "D").astype(np.int64))
    keys = tie_key(np.array([day, day]), np.array(["i001", "i002"], dtype=object))
    assert keys[0] > keys[1]
    for order in (rows, rows[:1] + rows[2:3] + rows[1:2] + rows[3:], rows[::-1]):
        split = leave_latest_out(_frame(order), cat)
        assert split.customer_ids == ("a", "b")
        assert split.test_items.tolist() == [1, 3]
        assert split.items_of(0).tolist() == [0, 2]
        assert split.items_of(1).tolist() == [4]  # i003 collapsed to its latest time, which is the test item
        assert split.dropped_customers == 1 and split.dropped_rows == 1
        assert popularity_scores(split, 5).tolist() == [1, 0, 1, 0, 1]


def test_validation_folds_step_back_one_item_at_a_time():
    """skip_latest 1 and 2 written out: each customer's latest items set aside, the next one held out."""
    cat = _catalogue(6)
    frame = _frame([("a", f"i00{k}", f"2020-01-0{k + 1}") for k in range(5)]  # a: i000 ... i004 in time
                   + [("b", "i005", "2020-02-01"), ("b", "i001", "2020-02-02"), ("b", "i002", "2020-02-03")])
    one = leave_latest_out(frame, cat, skip_latest=1)
    assert one.customer_ids == ("a", "b") and one.test_items.tolist() == [3, 1]
    assert one.items_of(0).tolist() == [0, 1, 2] and one.items_of(1).tolist() == [5]
    two = leave_latest_out(frame, cat, skip_latest=2)
    assert two.customer_ids == ("a",) and two.test_items.tolist() == [2]  # b has one item left: dropped
    assert two.items_of(0).tolist() == [0, 1] and two.dropped_customers == 1
    assert leave_latest_out(frame, cat, skip_latest=4).num_customers == 0


def test_negatives_are_unseen_distinct_and_the_same_wherever_drawn():
    seen = np.array([0, 5, 7])
    a = sample_negatives("cust-1", seen, 200, seed=3)
    b = sample_negatives("cust-1", seen.copy(), 200, seed=3)
    assert np.array_equal(a, b) and len(np.unique(a)) == 99
    assert not np.isin(seen, a).any()
    assert not np.array_equal(a, sample_negatives("cust-2", seen, 200, seed=3))
    with pytest.raises(ConfigError, match="unseen items"):
        sample_negatives("cust-1", np.arange(150), 200, seed=3)


def test_evaluation_on_a_tiny_case_with_a_known_answer():
    # 102 items, alternating genres X / Y. Customer a: train {i000}, test i001. Customer b: train {i101},
    # test i100. Score = -index, so a's test item beats all its negatives (rank 0) and b's loses to all.
    genres = ["X" if j % 2 == 0 else "Y" for j in range(102)]
    cat = _catalogue(102, genres)
    frame = _frame([("a", "i000", "2020-01-01"), ("a", "i001", "2020-01-02"),
                    ("b", "i101", "2020-01-01"), ("b", "i100", "2020-01-02")])
    split = leave_latest_out(frame, cat)
    cand = evaluation_candidates(split, cat.num_items, seed=0)
    assert cand[:, 0].tolist() == [1, 100]
    scores = -np.arange(102, dtype=float)
    totals = evaluate_ranking(split, cat, lambda rows: np.tile(scores, (len(rows), 1)), scores, seed=0, share=0.0)
    m = totals.metrics(share=0.0)
    assert m["hr@10"] == pytest.approx(0.5) and m["ndcg@10"] == pytest.approx(0.5)
    # full-catalogue top-10: a gets i001..i010, b gets i000..i009 -> 11 distinct items of 102
    assert m["coverage"] == pytest.approx(11 / 102, abs=1e-6)
    # each list has 5 X and 5 Y: 50 of the 90 ordered pairs differ in genre
    assert m["ild"] == pytest.approx(50 / 90, abs=1e-6)


def test_exploration_share_reserves_the_last_slots_for_eligible_items():
    assert [explore_slots(10, s) for s in (0.0, 0.05, 0.2, 0.5)] == [0, 1, 2, 5]
    assert explore_slots(1, 0.5) == 0
    with pytest.raises(ConfigError):
        explore_slots(10, 1.0)
    candidates = np.arange(10)
    scores = -np.arange(10, dtype=float)
    eligible = np.zeros(10, dtype=bool)
    eligible[[1, 7, 8, 9]] = True
    assert rerank_with_exploration(scores, candidates, eligible, k=5, share=0.4).tolist() == [0, 1, 2, 7, 8]
    none = np.zeros(10, dtype=bool)
    assert rerank_with_exploration(scores, candidates, none, k=5, share=0.4).tolist() == [0, 1, 2, 3, 4]


def test_exploration_mask_is_tail_or_outside_the_customers_usual_genres():
    cat = _catalogue(6, ["X", "X", "Y", "Z", "X|Z", "Y"])
    exposure = np.array([10.0, 9, 8, 1, 7, 0])
    history = np.array([0, 1, 4])  # X three times, Z once: taste = {X, Z}
    mask = exploration_mask(cat.attributes, exposure, history)
    # tail (below the median exposure 7.5): items 3, 4, 5; outside {X, Z}: items 2, 5
    assert mask.tolist() == [False, False, True, True, True, True]


def test_exploration_raises_diversity_and_costs_accuracy_when_the_taste_is_narrow():
    # 40 X items scored high, 80 Y items scored low; a customer who only ever saw X items.
    genres = ["X"] * 40 + ["Y"] * 80
    cat = _catalogue(120, genres)
    frame = _frame([("a", "i000", "2020-01-01"), ("a", "i001", "2020-01-02")])
    split = leave_latest_out(frame, cat)
    scores = np.concatenate([np.linspace(10, 9, 40), np.linspace(1, 0, 80)])
    lists = top_k_lists(scores[None, :], [split.items_of(0)], k=10)
    assert intra_list_diversity(lists, cat.attributes)[0] == 0.0
    m = evaluate_ranking(split, cat, lambda rows: np.tile(scores, (len(rows), 1)), scores, seed=1, share=0.2)
    metrics = m.metrics(share=0.2)
    assert metrics["ild"] == 0.0
    assert metrics["explore"]["ild"] == pytest.approx(2 * 8 * 2 / 90, abs=1e-6)  # 8 X + 2 Y
    assert metrics["explore"]["ild_gain"] > 0
    assert metrics["explore"]["coverage"] >= metrics["coverage"]

"""Cold-start segments: which column, how values become segments, and small segments falling back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.tasks.recommend import segments


def test_the_segment_column_is_the_named_one_or_the_first_known_one_present():
    customers = pd.DataFrame({"customer_id": ["a", "b"], "region": ["w", "e"], "tier": [None, None], "age": [3, 4]})
    assert segments.choose_column(customers, None) == "region"  # tier has no value
    assert segments.choose_column(customers, "age") == "age"
    assert segments.choose_column(customers.drop(columns=["region"]), None) is None
    assert segments.choose_column(None, None) is None
    with pytest.raises(ConfigError, match="--segment shoe: no such column .* available: region, tier, age"):
        segments.choose_column(customers, "shoe")


def test_numeric_columns_become_quintiles_and_missing_values_a_segment_of_their_own():
    ages = pd.Series([18, 22, 25, 31, 38, 44, 51, 60, 67, 70, None])
    labels = segments.segment_labels(ages, "age")
    assert labels.nunique() == 6 and labels.iloc[-1] == "age=unknown" and labels.iloc[0].startswith("age=")
    assert list(segments.segment_labels(pd.Series(["w", None]), "region")) == ["region=w", "region=unknown"]


def test_popularity_counts_customers_per_segment_and_small_segments_use_the_whole_partner():
    labels = pd.Series(["r=a"] * 3 + ["r=b"] * 2)
    # customers 0-2 (segment a) saw item 1, customer 2 also item 0; segment b saw item 2 and 3
    indptr = np.array([0, 1, 2, 4, 5, 6])
    seen = np.array([1, 1, 0, 1, 2, 3])
    pop = segments.popularity(labels, "r", indptr, seen, 4, min_customers=3)
    assert pop.labels == ("r=a", segments.ALL_CUSTOMERS)
    assert list(pop.codes) == [0, 0, 0, 1, 1]  # segment b has 2 < 3 active customers: the whole partner
    assert list(pop.counts[0]) == [1, 3, 0, 0] and list(pop.counts[1]) == [1, 3, 1, 1]
    order = np.argsort(-pop.ranking_scores(np.array([3]))[0], kind="stable")
    assert list(order) == [1, 0, 2, 3]  # popularity, ties by catalogue position
    assert np.allclose(pop.shares(np.array([0]), np.array([[1, 0]])), [[1.0, 1 / 3]])

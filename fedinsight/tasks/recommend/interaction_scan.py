"""The recommender's input from the partner's engine (DuckDB or Spark): one row per customer and item, ranked by
recency, instead of every interaction row in pandas.

Why pairs: the leave-latest-one-out split (:func:`fedinsight.models.ranking.split_ranked`) needs, per customer,
only its distinct items in the order it last touched them -- the training data itself, but one row per pair where
an export holds every view, rating and repeat. The engine groups the rows, keeps each pair's latest time and ranks a
customer's pairs with the same rule as the pandas path (:func:`~fedinsight.models.ranking.ranked_pairs`: latest
first, same-instant ties by :func:`~fedinsight.models.ranking.tie_key`), so the split equals the pandas path's
exactly (tests/unit/partner/engine/test_engine_recommend.py). Items outside the job's catalogue are kept with their
row count: the split leaves them out and reports how many interactions that dropped, as the pandas path does.
"""

from __future__ import annotations

import pandas as pd

from fedinsight.federation.scan import Scan
from fedinsight.federation.task import Partner
from fedinsight.models.ranking import SPLIT_COLUMNS

_DAY = "date_diff('day', DATE '1970-01-01', CAST(last_time AS DATE))"

PAIRS = Scan(
    "recommend.pairs",
    "WITH pairs AS (SELECT customer_id, CAST(item_id AS VARCHAR) AS item_id, MAX(timestamp) AS last_time, "
    "CAST(COUNT(*) AS BIGINT) AS n FROM interactions WHERE timestamp IS NOT NULL "
    "GROUP BY customer_id, CAST(item_id AS VARCHAR)) "
    "SELECT customer_id, item_id, n, CAST(ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY last_time DESC, "
    f"md5(CAST({_DAY} AS VARCHAR) || '/' || item_id) DESC NULLS LAST) AS BIGINT) AS recency FROM pairs",
    ("interactions",),
)
""":data:`~fedinsight.models.ranking.SPLIT_COLUMNS` for every customer in scope with an interaction."""


def engine_pairs(partner: Partner) -> pd.DataFrame:
    """The partner's interactions as ranked (customer token, item) pairs, computed by its engine."""
    frame = partner.scan(PAIRS)
    return frame.loc[:, list(SPLIT_COLUMNS)]

"""The recommender's input from the partner's engine (DuckDB or Spark): one entry per customer and item, ranked by
recency, as integers, instead of every interaction row in pandas.

Why pairs: the leave-latest-one-out split (:func:`fedinsight.models.ranking.split_coded`) needs, per customer, only
its distinct items in the order it last touched them -- the training data itself, but one entry per pair where an
export holds every view, rating and repeat. The engine groups the rows, keeps each pair's latest time and ranks a
customer's pairs with the same rule as the pandas path (:func:`~fedinsight.models.ranking.ranked_pairs`: latest
first, same-instant ties by :func:`~fedinsight.models.ranking.tie_key`), so the split equals the pandas path's
exactly (tests/unit/partner/engine/test_engine_recommend.py).

Why numbers: at 50 M pairs, a Python string per pair for the customer token and another for the item id would hold
several GB. So the pairs come back as (customer number, item number, rows, recency) in 32-bit integers, with the
customers numbered in raw-id order (``ROW_NUMBER() OVER (ORDER BY customer_id)``, tokenized once per customer by a
second scan of the same preparation) and the items numbered in id order by a third. Items outside the job's
catalogue stay numbered with their row count: the split leaves them out and reports how many interactions that
dropped, as the pandas path does. (On Spark the two numberings are windows without a partition: one task each,
over the distinct customers and items only.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedinsight.core.errors import DataValidationError, Problem
from fedinsight.federation.scan import Scan
from fedinsight.federation.task import Partner
from fedinsight.models.ranking import Catalogue, InteractionSplit, split_coded

_TIMED = "FROM interactions WHERE timestamp IS NOT NULL"
_ITEM = "COALESCE(CAST(item_id AS VARCHAR), '')"  # '' never is an item (ids are trimmed, blank is missing)
_DAY = "date_diff('day', DATE '1970-01-01', CAST(r.last_time AS DATE))"

PAIRS = Scan(
    "recommend.pairs",
    f"WITH pairs AS (SELECT customer_id, {_ITEM} AS item_id, MAX(timestamp) AS last_time, COUNT(*) AS n {_TIMED} "
    f"GROUP BY customer_id, {_ITEM}), "
    "people AS (SELECT customer_id, ROW_NUMBER() OVER (ORDER BY customer_id) AS customer_no "
    "FROM (SELECT DISTINCT customer_id FROM pairs) AS d), "
    "things AS (SELECT item_id, ROW_NUMBER() OVER (ORDER BY item_id) AS item_no "
    "FROM (SELECT DISTINCT item_id FROM pairs) AS e) "
    "SELECT r.customer_id, CAST(p.customer_no AS INTEGER) AS customer_no, CAST(t.item_no AS INTEGER) AS item_no, "
    "CAST(r.n AS BIGINT) AS n, CAST(ROW_NUMBER() OVER (PARTITION BY r.customer_id ORDER BY r.last_time DESC, "
    f"md5(CAST({_DAY} AS VARCHAR) || '/' || r.item_id) DESC) AS INTEGER) AS recency "
    "FROM pairs AS r JOIN people AS p ON r.customer_id = p.customer_id JOIN things AS t ON r.item_id = t.item_id",
    ("interactions",),
    drop_ids=True,
)
"""One row per (customer, item) in scope: numbers, the pair's interactions and its recency (1 = latest)."""

PEOPLE = Scan(
    "recommend.people",
    "SELECT customer_id, CAST(ROW_NUMBER() OVER (ORDER BY customer_id) AS INTEGER) AS customer_no "
    f"FROM (SELECT DISTINCT customer_id {_TIMED}) AS d",
    ("interactions",),
)
"""Each customer of :data:`PAIRS` with its number (tokenized: one row per customer)."""

THINGS = Scan(
    "recommend.items",
    f"SELECT item_id, CAST(ROW_NUMBER() OVER (ORDER BY item_id) AS INTEGER) AS item_no "
    f"FROM (SELECT DISTINCT {_ITEM} AS item_id {_TIMED}) AS e",
    ("interactions",),
)
"""Each item id of :data:`PAIRS` with its number (no customer in it)."""


class EnginePairs:
    """A partner's ranked pairs as integer arrays; :meth:`split` gives the split with any ``skip_latest``."""

    def __init__(self, pairs: pd.DataFrame, people: pd.DataFrame, things: pd.DataFrame, catalogue: Catalogue) -> None:
        _check_numbering(pairs, people, things)
        tokens = people["customer_id"].astype(str).to_numpy(dtype=object)
        order = np.argsort(tokens, kind="stable")
        self.ids = tokens[order]
        code_of = np.empty(len(tokens) + 1, dtype=np.int64)  # customer number -> position among sorted tokens
        code_of[people["customer_no"].to_numpy(dtype=np.int64)[order]] = np.arange(len(tokens))
        index_of = np.full(len(things) + 1, -1, dtype=np.int64)  # item number -> catalogue index or -1
        index_of[things["item_no"].to_numpy(dtype=np.int64)] = (
            things["item_id"].astype(str).map(catalogue.index()).fillna(-1).to_numpy(dtype=np.int64))
        self.codes = code_of[pairs["customer_no"].to_numpy(dtype=np.int64)]
        self.items = index_of[pairs["item_no"].to_numpy(dtype=np.int64)]
        self.rows = pairs["n"].to_numpy(dtype=np.int64)
        self.recency = pairs["recency"].to_numpy(dtype=np.int64)

    def split(self, skip_latest: int = 0) -> InteractionSplit:
        return split_coded(self.codes, self.ids, self.items, self.rows, self.recency, skip_latest=skip_latest)


def _check_numbering(pairs: pd.DataFrame, people: pd.DataFrame, things: pd.DataFrame) -> None:
    """The three scans are three queries over the partner's files: numbered 1..N, the pairs must use exactly the
    numbers the other two handed out. A file replaced between the queries would pair one customer's items with
    another's token; refused instead (nothing is released from a partial read)."""
    for column, table, what in (("customer_no", people, "customers"), ("item_no", things, "items")):
        numbers = pairs[column].to_numpy(dtype=np.int64)
        listed = table[column].to_numpy(dtype=np.int64)
        if len(numbers) and (numbers.max() != len(table) or numbers.min() < 1 or len(np.unique(listed)) != len(table)
                             or listed.min() < 1 or listed.max() != len(table)):
            raise DataValidationError(Problem("interactions", f"the {what} changed while the interactions were read "
                                              "(a file replaced during the job?); run the job again"))


def engine_pairs(partner: Partner, catalogue: Catalogue) -> EnginePairs:
    """The partner's interactions as ranked pairs, computed by its engine in one preparation of its tables."""
    pairs, people, things = partner.scans([PAIRS, PEOPLE, THINGS])
    return EnginePairs(pairs, people, things, catalogue)

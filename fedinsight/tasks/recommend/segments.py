"""Cold start on the partner: its own popular items within a customer's segment.

A customer with fewer than two interactions has no embedding (the model's training split needs one
interaction to learn from and one to hold out), and a customer who arrived after training has none
either. Such a customer gets the items most of their segment's customers interacted with, computed here,
on the partner, from its own data view (consent for recommendation and erasures applied) -- the counts
never leave the partner and cost no budget.

The segment is whatever the partner has locally: a ``customers`` column it names (``--segment region``),
or by default the first of :data:`AUTO_COLUMNS` it holds; numeric columns (``age``) are cut into
quintiles. A segment with fewer than ``min_customers`` customers with any interaction uses the whole
partner's popularity instead (a tiny segment's "popular items" would be a few people's histories, shown
to their neighbours); the output says which segment each list came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError

AUTO_COLUMNS: tuple[str, ...] = ("segment", "rfm_segment", "customer_segment", "tier", "region")
"""Customers columns used as the segment when none is named, in this order."""

ALL_CUSTOMERS = "all customers"
MIN_SEGMENT_CUSTOMERS = 20
NUMERIC_BINS = 5


@dataclass(frozen=True)
class SegmentPopularity:
    """Per segment, how many of its customers interacted with each item (partner-local, never sent).

    ``codes[c]`` is customer c's row of ``counts`` (customers in the order they were given); ``labels`` name
    the rows ("region=west", or :data:`ALL_CUSTOMERS` for the whole partner, the last row).
    """

    column: str | None
    labels: tuple[str, ...]
    codes: np.ndarray  # (customers,) int row of counts
    counts: np.ndarray  # (segments, items) distinct customers per item
    sizes: np.ndarray  # (segments,) customers with at least one interaction

    def ranking_scores(self, customers: np.ndarray) -> np.ndarray:
        """(len(customers), items) scores whose order is popularity, ties broken by catalogue position: counts
        are whole numbers, so adding a fraction below 1 that falls with the position only orders equal counts."""
        counts = self.counts[self.codes[customers]].astype(np.float64)
        items = counts.shape[1]
        return counts + (items - np.arange(items)) / (items + 1.0)

    def shares(self, customers: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The reported score: the share of the segment's customers who interacted with each listed item."""
        rows = self.codes[customers]
        values = self.counts[rows[:, None], np.maximum(items, 0)] / np.maximum(self.sizes[rows], 1)[:, None]
        return np.where(items >= 0, values, np.nan)


def choose_column(customers: pd.DataFrame | None, requested: str | None) -> str | None:
    """The customers column to segment by: ``requested`` (it must exist), else the first of
    :data:`AUTO_COLUMNS` with a value, else none (the whole partner)."""
    columns = [] if customers is None else [c for c in customers.columns if c != "customer_id"]
    if requested:
        if requested not in columns:
            available = ", ".join(columns) or "none (this partner has no customers table)"
            raise ConfigError(f"--segment {requested}: no such column in this partner's customers table "
                              f"(after its protection policy); available: {available}")
        return requested
    for column in AUTO_COLUMNS:
        if column in columns and customers[column].notna().any():  # type: ignore[index]
            return column
    return None


def segment_labels(values: pd.Series, column: str) -> pd.Series:
    """One label per customer: ``column=value``; numeric columns in quintiles; missing values "unknown"."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) \
            and values.nunique() > NUMERIC_BINS:
        bins = pd.qcut(values.astype("float64"), NUMERIC_BINS, duplicates="drop")
        names = {b: f"{b.left:g}-{b.right:g}" for b in bins.cat.categories}
        text = pd.Series([names.get(b) for b in bins], index=values.index, dtype="string")
    else:
        text = values.astype("string")
    return (column + "=" + text.fillna("unknown")).astype(str)


def popularity(labels: pd.Series | None, column: str | None, seen_indptr: np.ndarray, seen_items: np.ndarray,
               num_items: int, min_customers: int = MIN_SEGMENT_CUSTOMERS) -> SegmentPopularity:
    """Distinct customers per (segment, item) from the customers' histories (CSR over ``labels``' order).

    Segments with fewer than ``min_customers`` customers who have any interaction share the whole partner's
    row instead.
    """
    customers = len(seen_indptr) - 1
    owners = np.repeat(np.arange(customers), np.diff(seen_indptr))
    total = np.bincount(seen_items, minlength=num_items)
    active = np.diff(seen_indptr) > 0
    if labels is None or column is None:
        return SegmentPopularity(None, (ALL_CUSTOMERS,), np.zeros(customers, dtype=np.int64), total[None, :],
                                 np.array([int(active.sum())]))
    codes, names = pd.factorize(labels.to_numpy(), sort=True)
    sizes = np.bincount(codes[active], minlength=len(names))
    kept = np.flatnonzero(sizes >= min_customers)
    row = np.full(len(names), len(kept), dtype=np.int64)  # too small: the whole partner's row (the last)
    row[kept] = np.arange(len(kept))
    per = np.zeros((len(kept) + 1, num_items), dtype=np.int64)
    np.add.at(per, (row[codes[owners]], seen_items), 1)
    per[-1] = total
    return SegmentPopularity(column, (*[str(names[j]) for j in kept], ALL_CUSTOMERS), row[codes], per,
                             np.append(sizes[kept], int(active.sum())))

"""A partner's customer baskets and their exact counts (never sent; only their noisy versions leave).

The item of a purchase is its category, read through the partner's data view (mapping, consent, erasures
applied), from the first of:

1. ``transactions.category`` when the partner maps one (and it holds a value);
2. otherwise its ``interactions`` joined to its ``items`` catalogue: the item's ``category``, else its
   ``genres`` (``|``-separated: a film of two genres puts both in the basket) -- MovieLens is read this way;
3. otherwise the partner cannot take part: a :class:`ConfigError` that says which column to map.

A customer's basket is the set of items they bought, cut to their ``max_items`` most bought ones (more rows
first, then the item's name: a rule on the customer's own rows only), so that one customer moves each item count
by at most 1, at most ``L`` item counts, and at most ``L(L-1)/2`` pair counts. That bound is what the noise is
calibrated to (:mod:`.noise`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import PartnerData

MAX_ITEM_LENGTH = 64
ITEM = re.compile(r'[^"\\\x00-\x1f\x7f]{1,' + str(MAX_ITEM_LENGTH) + "}")
"""An item name that may travel: up to 64 characters, no quote, backslash or control character (the reply's
JSON needs no escapes, and the manifest's pattern pins it down). Other names are left out of every count."""
NO_ITEMS = ("has no purchase category: map a `category` column in its transactions (mapping.toml), or give an "
            "items catalogue with a `category` or `genres` column for its interactions")


def _utc(ts: pd.Series) -> pd.Series:
    ts = pd.to_datetime(ts, errors="coerce", utc=True)
    return ts


def _usable(values: pd.Series) -> pd.Series:
    return values.notna() & values.astype("string").str.strip().ne("")


def purchases(data: PartnerData, as_of: str = "") -> tuple[pd.DataFrame, str]:
    """``(customer_id, item)`` rows (one per purchase line of an item) before ``as_of``, and where items came from."""
    tx = data.transactions
    if isinstance(tx, pd.DataFrame) and "category" in tx.columns and _usable(tx["category"]).any():
        rows = tx.loc[_usable(tx["category"]), ["customer_id", "timestamp", "category"]]
        frame = pd.DataFrame({"customer_id": rows["customer_id"].astype(str),
                              "item": rows["category"].astype("string").str.strip(), "timestamp": rows["timestamp"]})
        source = "transactions.category"
    else:
        frame, source = _from_catalogue(data)
    if as_of:
        cut = pd.Timestamp(as_of)
        cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
        frame = frame[_utc(frame["timestamp"]) < cut]
    keep = frame["item"].map(lambda v: ITEM.fullmatch(str(v)) is not None).astype(bool)
    return frame.loc[keep, ["customer_id", "item"]].reset_index(drop=True), source


def _from_catalogue(data: PartnerData) -> tuple[pd.DataFrame, str]:
    inter, items = data.interactions, data.items
    if not (isinstance(inter, pd.DataFrame) and isinstance(items, pd.DataFrame)):
        raise ConfigError(f"partner '{data.partner_id}' {NO_ITEMS}")
    lookup, column = catalogue_lookup(items, data.partner_id)
    rows = inter[["customer_id", "item_id", "timestamp"]].astype({"customer_id": str, "item_id": str})
    frame = rows.merge(lookup, on="item_id", how="inner")
    return frame[["customer_id", "item", "timestamp"]], f"interactions + items.{column}"


def catalogue_lookup(items: pd.DataFrame, partner_id: str) -> tuple[pd.DataFrame, str]:
    """``(item_id, item)`` from the items catalogue's ``category``, else its ``genres`` (split at ``|``), and the
    column used: shared by the pandas path and the engine path (which reads the catalogue through a scan)."""
    column = next((c for c in ("category", "genres") if c in items.columns and _usable(items[c]).any()), None)
    if column is None:
        raise ConfigError(f"partner '{partner_id}' {NO_ITEMS}")
    lookup = items.loc[_usable(items[column]), ["item_id", column]].astype({"item_id": str})
    lookup = lookup.assign(item=lookup[column].astype("string").str.split("|") if column == "genres"
                           else lookup[column].astype("string").map(lambda v: [v]))
    lookup = lookup.explode("item")
    lookup["item"] = lookup["item"].astype("string").str.strip()
    lookup = lookup[lookup["item"].notna() & lookup["item"].ne("")]
    return lookup[["item_id", "item"]], column


def baskets(rows: pd.DataFrame, max_items: int, allowed: Sequence[str] | None = None) -> pd.DataFrame:
    """``(customer_id, item)``, one row per item in a customer's basket: their ``max_items`` most bought items
    (among ``allowed`` when given), ties broken by the item's name. ``rows`` is one row per purchase line, or
    (engine path) one row per customer and item with its purchase lines counted in ``n``."""
    if allowed is not None:
        rows = rows[rows["item"].isin(list(allowed))]
    if "n" in rows.columns:
        counts = rows.groupby(["customer_id", "item"], sort=False)["n"].sum().reset_index()
    else:
        counts = rows.groupby(["customer_id", "item"], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values(["customer_id", "n", "item"], ascending=[True, False, True], kind="mergesort")
    kept = counts[counts.groupby("customer_id", sort=False).cumcount() < max_items]
    return kept[["customer_id", "item"]].reset_index(drop=True)


def item_counts(basket: pd.DataFrame) -> dict[str, float]:
    """Customers per item (exact)."""
    return {str(k): float(v) for k, v in basket["item"].value_counts().items()}


def pair_index(i: np.ndarray, j: np.ndarray, m: int) -> np.ndarray:
    """Position of pair (i, j), i < j < m, in the upper-triangle order (0,1), (0,2) ... (1,2) ..."""
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    return i * m - i * (i + 1) // 2 + (j - i - 1)


def pairs_of(m: int) -> list[tuple[int, int]]:
    """Every pair (i, j), i < j < m, in :func:`pair_index` order."""
    return [(i, j) for i in range(m) for j in range(i + 1, m)]


def candidate_counts(rows: pd.DataFrame, candidates: Sequence[str], slots: int,
                     max_items: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Exact (customers with a purchase, customers per candidate item, customers per candidate pair).

    ``slots``: the job's fixed number of candidates (vectors are that long whatever the list holds; empty slots
    count 0). Baskets are cut to ``max_items`` among the candidates, so one customer adds at most 1, L and
    L(L-1)/2 to the three parts.
    """
    if len(candidates) > slots or len(set(candidates)) != len(candidates):
        raise ConfigError(f"the candidate list must hold at most {slots} distinct items")
    customers = float(rows["customer_id"].nunique())
    basket = baskets(rows, max_items, candidates)
    position = {item: k for k, item in enumerate(candidates)}
    idx = basket["item"].map(position).to_numpy(dtype=np.int64)
    items = np.bincount(idx, minlength=slots).astype(float)
    cust = pd.factorize(basket["customer_id"])[0]
    frame = pd.DataFrame({"c": cust, "i": idx})
    both = frame.merge(frame, on="c")
    both = both[both["i_x"] < both["i_y"]]
    pairs = np.bincount(pair_index(both["i_x"].to_numpy(), both["i_y"].to_numpy(), slots),
                        minlength=slots * (slots - 1) // 2).astype(float)
    return customers, items, pairs

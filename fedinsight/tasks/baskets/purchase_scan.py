"""Baskets' purchases from the partner's engine (DuckDB or Spark): per customer and item, how many purchase lines,
instead of every purchase row in pandas.

Why counts per customer and item: a basket (:func:`~.basket.baskets`) only needs how often each customer bought
each item, so the engine groups the rows and pandas holds one row per customer and item. The item rules stay in
pandas, on those few rows, so they are the very code the pandas path runs: the source is the transactions'
``category`` when one holds a value (stripped; the scan groups by the raw value, pandas strips and adds up), else
the interactions joined to the items catalogue (:func:`~.basket.catalogue_lookup`; the catalogue is read by a scan
too, it holds no customer); names that may not travel (:data:`~.basket.ITEM`) are left out afterwards. Counts are
integers, so the baskets equal the pandas path's exactly (the engine tests check it).
"""

from __future__ import annotations

import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.federation.scan import Scan, naive_utc, timestamp_literal
from fedinsight.federation.task import Partner
from fedinsight.tasks.baskets.basket import ITEM, NO_ITEMS, catalogue_lookup

COLUMNS = ["customer_id", "item", "n"]


def _before(as_of: str) -> str:
    """The SQL condition "before the reference date" (always true without one, as on the pandas path)."""
    return f"timestamp < {timestamp_literal(naive_utc(as_of))}" if as_of else "TRUE"


def category_scan(as_of: str) -> Scan:
    """Per customer and raw ``category`` value: purchase lines before ``as_of`` (0 kept: whether any value is usable
    is decided over the whole table, as the pandas path decides it)."""
    sql = (f"SELECT customer_id, category AS raw, CAST(SUM(CASE WHEN {_before(as_of)} THEN 1 ELSE 0 END) AS BIGINT) "
           "AS n FROM transactions WHERE category IS NOT NULL GROUP BY customer_id, category")
    return Scan("baskets.category_counts", sql, ("transactions",))


def interactions_scan(as_of: str) -> Scan:
    """Per customer and item id: interactions before ``as_of``."""
    item = "CAST(item_id AS VARCHAR)"
    sql = (f"SELECT customer_id, {item} AS item_id, COUNT(*) AS n FROM interactions WHERE {_before(as_of)} "
           f"GROUP BY customer_id, {item}")
    return Scan("baskets.interaction_counts", sql, ("interactions",))


def catalogue_scan(columns: list[str]) -> Scan:
    """The items catalogue's id and its ``category`` / ``genres`` columns (those it has)."""
    picked = "".join(f", {c}" for c in ("category", "genres") if c in columns)
    return Scan("baskets.catalogue", f"SELECT CAST(item_id AS VARCHAR) AS item_id{picked} FROM items", ("items",))


def _travelling(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with a purchase, added up per customer and (stripped) item, names that may travel only."""
    frame = frame[frame["n"] > 0]
    counts = frame.groupby(["customer_id", "item"], sort=False)["n"].sum().reset_index()
    keep = counts["item"].map(lambda v: ITEM.fullmatch(str(v)) is not None).astype(bool)
    return counts.loc[keep, COLUMNS].reset_index(drop=True)


def engine_purchases(partner: Partner, as_of: str = "") -> tuple[pd.DataFrame, str]:
    """``(customer_id, item, n)``: what :func:`~.basket.purchases` gives, counted per customer and item by the
    partner's engine, and where items came from (ConfigError naming what to map when nothing gives items)."""
    columns = partner.columns()
    if "category" in columns.get("transactions", []):
        frame = partner.scan(category_scan(as_of))
        item = frame["raw"].astype("string").str.strip()
        usable = item.notna() & item.ne("")
        if usable.any():
            rows = pd.DataFrame({"customer_id": frame["customer_id"].astype(str), "item": item,
                                 "n": frame["n"].astype("int64")})[usable.to_numpy()]
            return _travelling(rows), "transactions.category"
    if "interactions" not in columns or "items" not in columns or "item_id" not in columns["items"]:
        raise ConfigError(f"partner '{partner.partner_id}' {NO_ITEMS}")
    counts, items = partner.scans([interactions_scan(as_of), catalogue_scan(columns["items"])])
    lookup, column = catalogue_lookup(items, partner.partner_id)
    counts = counts.assign(customer_id=counts["customer_id"].astype(str), item_id=counts["item_id"].astype(str),
                           n=counts["n"].astype("int64"))
    rows = counts.merge(lookup, on="item_id", how="inner")
    return _travelling(rows), f"interactions + items.{column}"

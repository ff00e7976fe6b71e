"""Segments' customer vectors from one engine scan (DuckDB or Spark), then the same public transforms the pandas
path applies (:func:`~.features.scaled_vectors`).

Why split this way: the engine reduces the partner's transactions (and, for ``funnel``, its events) before the
reference date to one row per customer -- purchases, exact money sum, microseconds from its first and last
purchase to the reference date, evening purchases, purchases in each declared channel or category, deepest
funnel stage -- and pandas only scales those few numbers. Counts are integers and money is summed exactly, so
the vectors equal :func:`~.features.customer_vectors` on the partner's tables (the engine tests check it).

Evening in a partner zone other than UTC: local hours need the zone's rules (daylight saving), which the two
engines do not share, so a second scan counts each customer's purchases per UTC quarter hour and pandas reads
each quarter's local hour. Exact for every zone whose offset is a whole number of quarter hours (all zones in
use today, Kathmandu's +05:45 and Chatham's +12:45 included).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import FUNNEL_STAGES
from fedinsight.federation.scan import MONEY, Scan, naive_utc, sql_string, timestamp_literal
from fedinsight.federation.task import Partner
from fedinsight.tasks.segments.features import MIX_COLUMNS, reference_date, scaled_vectors

_US_PER_DAY = 86_400 * 1_000_000
_QUARTER = 900
"""Seconds in a quarter hour: the bucket the non-UTC evening scan counts purchases in."""


def _mixes(features: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(feature, transactions column, declared value) for each channel / category share the job asks for."""
    out = []
    for name in features:
        kind, _, value = name.partition(":")
        if kind in MIX_COLUMNS and value:
            out.append((name, MIX_COLUMNS[kind], value))
    return out


def vectors_scan(cut: pd.Timestamp, features: tuple[str, ...], zone: str) -> Scan:
    """Per customer with a purchase before ``cut``: the integers and exact sums its vector is made of."""
    before = f"timestamp < {timestamp_literal(cut)}"
    cut_sql = timestamp_literal(cut)
    columns = [
        "COUNT(*) AS n",
        f"SUM(GREATEST(COALESCE(CAST(amount AS {MONEY}), CAST(0 AS {MONEY})), CAST(0 AS {MONEY}))) AS spend",
        f"CAST(date_diff('microsecond', MIN(timestamp), {cut_sql}) AS BIGINT) AS tenure_us",
        f"CAST(date_diff('microsecond', MAX(timestamp), {cut_sql}) AS BIGINT) AS recency_us",
    ]
    if "evening" in features and zone == "UTC":
        columns.append("CAST(SUM(CASE WHEN HOUR(timestamp) >= 18 THEN 1 ELSE 0 END) AS BIGINT) AS evening_n")
    for i, (_, column, value) in enumerate(_mixes(features)):
        columns.append(f"CAST(SUM(CASE WHEN CAST({column} AS VARCHAR) = {sql_string(value)} THEN 1 ELSE 0 END) "
                       f"AS BIGINT) AS mix_{i}")
    sql = f"SELECT customer_id, {', '.join(columns)} FROM transactions WHERE {before} GROUP BY customer_id"
    tables: tuple[str, ...] = ("transactions",)
    if "funnel" in features:
        ranks = " ".join(f"WHEN {sql_string(s)} THEN {i}" for i, s in enumerate(FUNNEL_STAGES))
        sql = (f"WITH buyers AS ({sql}), funnel AS (\n"
               f"  SELECT customer_id, MAX(CASE stage {ranks} ELSE 0 END) AS rank\n"
               f"  FROM events WHERE {before} GROUP BY customer_id)\n"
               "SELECT b.*, COALESCE(f.rank, 0) AS funnel_rank FROM buyers AS b "
               "LEFT JOIN funnel AS f ON b.customer_id = f.customer_id")
        tables = ("transactions", "events")
    return Scan("segments.customer_vectors", sql, tables)


def quarters_scan(cut: pd.Timestamp) -> Scan:
    """Per customer and UTC quarter hour before ``cut``: how many purchases (for ``evening`` in a non-UTC zone)."""
    seconds = "date_diff('second', TIMESTAMP '1970-01-01 00:00:00', timestamp)"
    quarter = f"CAST(FLOOR({seconds} / {_QUARTER}) AS BIGINT)"
    sql = (f"SELECT customer_id, {quarter} AS quarter, COUNT(*) AS n FROM transactions "
           f"WHERE timestamp < {timestamp_literal(cut)} GROUP BY customer_id, {quarter}")
    return Scan("segments.evening_quarters", sql, ("transactions",))


def _check_columns(partner: Partner, features: tuple[str, ...]) -> None:
    """The same refusals as the pandas path, from the schema alone (before a scan would fail on a column)."""
    if "funnel" not in features and not _mixes(features):
        return
    columns = partner.columns()
    if "funnel" in features and not {"customer_id", "timestamp", "stage"} <= set(columns.get("events", [])):
        raise ConfigError("the feature funnel needs an events table (customer_id, timestamp, stage); map one in "
                          "the partner's mapping or leave funnel out of --features")
    for _, column, value in _mixes(features):
        if column not in columns.get("transactions", []):
            raise ConfigError(f"the feature {column}:{value} needs a '{column}' column in transactions; map one in "
                              "the partner's mapping or leave it out of --features")


def engine_vectors(partner: Partner, as_of: str, features: tuple[str, ...], zone: str) -> pd.DataFrame:
    """What :func:`~.features.customer_vectors` gives on the partner's tables, computed by its engine: one row per
    customer token (sorted, as a pandas group-by orders them), one column per feature."""
    cut = naive_utc(reference_date(as_of))
    _check_columns(partner, features)
    scans = [vectors_scan(cut, features, zone)]
    if "evening" in features and zone != "UTC":
        scans.append(quarters_scan(cut))
    results = partner.scans(scans)
    frame = results[0]
    if frame.empty:
        if "transactions" not in partner.columns():  # the engine reads an absent table as empty
            raise ConfigError("segments needs a transactions table (customer_id, timestamp, amount)")
        return pd.DataFrame(columns=list(features), dtype=float)
    frame = frame.assign(customer_id=frame["customer_id"].astype("string")).set_index("customer_id").sort_index()
    n = frame["n"].to_numpy(dtype=np.int64)
    spend = pd.Series(frame["spend"].to_numpy(dtype=float), index=frame.index)
    raw = {"recency": frame["recency_us"].astype(np.int64) / _US_PER_DAY,
           "frequency": pd.Series(n, index=frame.index), "monetary": spend, "basket": spend / n,
           "tenure": frame["tenure_us"].astype(np.int64) / _US_PER_DAY}
    if "evening" in features:
        evening = frame["evening_n"] if zone == "UTC" else _local_evenings(results[1], zone)
        raw["evening"] = evening.reindex(frame.index).fillna(0).astype(float) / n
    if "funnel" in features:
        raw["funnel"] = frame["funnel_rank"].astype(np.int64) / (len(FUNNEL_STAGES) - 1)
    for i, (name, _, _) in enumerate(_mixes(features)):
        raw[name] = frame[f"mix_{i}"].astype(np.int64) / n
    return scaled_vectors(raw, frame.index, features)


def _local_evenings(quarters: pd.DataFrame, zone: str) -> pd.Series:
    """Per customer token, its purchases at 18:00 or later in ``zone``, from the per-quarter-hour counts."""
    starts = pd.to_datetime(quarters["quarter"].astype(np.int64) * _QUARTER, unit="s", utc=True)
    evening = (starts.dt.tz_convert(zone).dt.hour >= 18).to_numpy()
    counts = quarters["n"].astype(np.int64).where(evening, 0)
    return counts.groupby(quarters["customer_id"].astype("string")).sum()

"""Customer vectors for segmentation: fixed, public transforms of a customer's purchases into [0, 1]^d.

Why fixed transforms: every partner must mean the same thing by "0.7 on monetary", and a scaling learnt from
one partner's data (its maximum, its standard deviation) would be both a leak and a different ruler at every
partner. So each feature is ``log1p(value) / log1p(public cap)``, clipped to [0, 1]; the caps are declared
here and printed in the report and in docs/segments.md. A vector in [0, 1]^d has L2 norm at most sqrt(d):
that is the per-customer bound the noisy sums are calibrated to.

Channel and category mix (``channel:<name>``, ``category:<name>``; ``channel-mix`` / ``category-mix`` expand to
every declared name): the customer's share of purchases whose ``channel`` / ``category`` equals that name. The
names are each partner's own vocabulary, so a job declares them publicly (``--channels``, ``--categories``) and
every partner means the same thing; purchases in an undeclared channel count in no share. A share is in [0, 1]
like every other coordinate, so the sqrt(d) bound and the charge are unchanged.

Funnel depth (``funnel``): the deepest stage a customer reached in campaign events before the reference date,
exposure < click < participate < convert scaled to 0, 1/3, 2/3, 1 (no event: 0, like an exposure only).

Only customers with at least one purchase strictly before the job's reference date ``as_of`` are segmented
(rows on or after it are ignored): the date is part of the job, never "the latest date in the data".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import FUNNEL_STAGES


@dataclass(frozen=True)
class Feature:
    """One coordinate of a customer's vector: what it measures and the public cap it is scaled by."""

    name: str
    cap: float
    unit: str
    bands: tuple[tuple[float, str], ...]  # (raw value at least, word), highest first; the last one catches all
    share: bool = False  # already a share in [0, 1]: used as it is, no log scale


FEATURES: dict[str, Feature] = {
    "recency": Feature("recency", 730.0, "days since the last purchase",
                       ((365, "lapsed"), (180, "lapsing"), (90, "cooling"), (30, "recent"), (0, "very recent"))),
    "frequency": Feature("frequency", 50.0, "purchases",
                         ((10, "very frequent"), (4, "frequent"), (1.5, "repeat"), (0, "one-off"))),
    "monetary": Feature("monetary", 5_000.0, "total spend",
                        ((1000, "top spend"), (250, "high spend"), (75, "mid spend"), (0, "low spend"))),
    "basket": Feature("basket", 1_000.0, "mean order value",
                      ((200, "big baskets"), (50, "mid baskets"), (0, "small baskets"))),
    "tenure": Feature("tenure", 3_650.0, "days since the first purchase",
                      ((1095, "long-standing"), (365, "established"), (90, "settling in"), (0, "new"))),
    "evening": Feature("evening", 1.0, "share of purchases 18:00-24:00 local time",
                       ((0.5, "evening shoppers"), (0.2, "some evenings"), (0, "daytime shoppers")), share=True),
    "funnel": Feature("funnel", 1.0, "deepest campaign stage reached (0 none or exposure, 1/3 click, "
                                     "2/3 participate, 1 convert)",
                      ((5 / 6, "converters"), (0.5, "campaign participants"), (1 / 6, "campaign clickers"),
                       (0, "not engaged by campaigns")), share=True),
}
"""The features a job may choose (``--features``), with their public caps."""

DEFAULT_FEATURES = "recency,frequency,monetary"

MIX_COLUMNS = {"channel": "channel", "category": "category"}
"""Mix feature kind -> the transactions column it reads (the partner's mapped ``channel`` / ``category``)."""
MAX_NAMES = 12
"""At most this many declared channels or categories (each one is a coordinate: more would thin the noise budget)."""
MAX_NAME_LENGTH = 40


def parse_names(text: str, flag: str) -> tuple[str, ...]:
    """A declared public list (``--channels`` / ``--categories``): comma-separated names, each at most
    :data:`MAX_NAME_LENGTH` characters without ``:``, at most :data:`MAX_NAMES` of them (ConfigError otherwise).
    An empty text is an empty list (nothing declared)."""
    names = tuple(dict.fromkeys(s.strip() for s in str(text or "").split(",") if s.strip()))
    if str(text or "").strip() and not names:
        raise ConfigError(f"{flag}: no name in {text!r}; give comma-separated names such as app,web,store")
    bad = [n for n in names if len(n) > MAX_NAME_LENGTH or ":" in n or not n.isprintable()]
    if bad:
        raise ConfigError(f"{flag}: names must be printable, without ':' and at most {MAX_NAME_LENGTH} characters "
                          f"(got {bad[0]!r})")
    if len(names) > MAX_NAMES:
        raise ConfigError(f"{flag}: at most {MAX_NAMES} names (got {len(names)}); keep the ones that matter")
    return names


def feature(name: str) -> Feature:
    """The :class:`Feature` a name stands for: a fixed one of :data:`FEATURES`, or a share ``channel:<name>`` /
    ``category:<name>`` (cap 1, bands "mostly app" / "books buyer"). KeyError for anything else."""
    if name in FEATURES:
        return FEATURES[name]
    kind, _, value = name.partition(":")
    if kind not in MIX_COLUMNS or not value:
        raise KeyError(name)
    if kind == "channel":
        bands = ((0.5, f"mostly {value}"), (0.2, f"some {value}"), (0.0, f"rarely {value}"))
    else:
        bands = ((0.5, f"{value} buyer"), (0.2, f"some {value}"), (0.0, f"little {value}"))
    return Feature(name, 1.0, f"share of purchases in {kind} '{value}'", bands, share=True)


def known(name: str) -> bool:
    """Whether :func:`feature` knows ``name`` (a model file's features are checked with it)."""
    try:
        feature(name)
    except KeyError:
        return False
    return True


def parse_features(text: str, channels: str = "", categories: str = "") -> tuple[str, ...]:
    """The job's feature names, in the given order, ``channel-mix`` / ``category-mix`` expanded to one share per
    declared name; a ``channel:<name>`` / ``category:<name>`` must name a declared one (``--channels`` /
    ``--categories``). ConfigError naming the known ones otherwise."""
    declared = {"channel": parse_names(channels, "--channels"), "category": parse_names(categories, "--categories")}
    names: list[str] = []
    for item in (s.strip() for s in str(text).split(",") if s.strip()):
        kind, sep, value = item.partition(":")
        if item in ("channel-mix", "category-mix"):
            kind = item.split("-")[0]
            if not declared[kind]:
                raise ConfigError(f"--features {item} needs the {kind} names declared: --{_flag(kind)} app,web")
            names += [f"{kind}:{v}" for v in declared[kind]]
        elif sep and kind in MIX_COLUMNS:
            if value.strip() not in declared[kind]:
                raise ConfigError(f"--features {item}: '{value}' is not in --{_flag(kind)} "
                                  f"({', '.join(declared[kind]) or 'none declared'}); declare it there")
            names.append(f"{kind}:{value.strip()}")
        elif item in FEATURES:
            names.append(item)
        else:
            raise ConfigError(f"--features: unknown {item!r}; choose from {', '.join(FEATURES)}, channel:<name>, "
                              "category:<name>, channel-mix, category-mix")
    if not names:
        raise ConfigError(f"--features: empty {text!r}; choose from {', '.join(FEATURES)}")
    return tuple(dict.fromkeys(names))


def _flag(kind: str) -> str:
    return "channels" if kind == "channel" else "categories"


def scale(raw: np.ndarray, cap: float) -> np.ndarray:
    """``log1p(raw) / log1p(cap)`` clipped to [0, 1] (negative raw values count as 0)."""
    return np.clip(np.log1p(np.maximum(np.asarray(raw, dtype=float), 0.0)) / math.log1p(cap), 0.0, 1.0)


def partner_zone(meta: dict[str, object]) -> str:
    """The partner's own time zone from its data view (``meta["timezone"]``; UTC when it states none), checked."""
    zone = str(meta.get("timezone") or "UTC")
    zone = "UTC" if zone == "local" else zone
    try:
        pd.Timestamp("2000-01-01", tz=zone)
    except Exception:  # noqa: BLE001 - any unknown zone name
        raise ConfigError(f"the partner's time zone {zone!r} is not an IANA zone (e.g. Asia/Shanghai)") from None
    return zone


def reference_date(as_of: str) -> pd.Timestamp:
    """The job's ``--as-of`` as a timestamp (ConfigError naming the flag when it is not a date)."""
    try:
        cut = pd.Timestamp(as_of)
    except (TypeError, ValueError):
        cut = pd.NaT
    if cut is pd.NaT:
        raise ConfigError(f"--as-of must be a date such as 2026-01-01 (got {as_of!r})")
    return cut


def customer_vectors(transactions: pd.DataFrame | None, as_of: str, features: tuple[str, ...],
                     zone: str = "UTC", events: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per customer with a purchase before ``as_of`` (index: the view's customer tokens), one column per
    feature, every value in [0, 1]. Recency is reversed (1 = bought yesterday) so that "high" reads as good;
    ``evening`` reads purchase hours in the partner's own time ``zone``."""
    cut = reference_date(as_of)
    if transactions is None:
        raise ConfigError("segments needs a transactions table (customer_id, timestamp, amount)")
    tx = transactions[["customer_id", "timestamp", "amount"]]
    stamps = pd.to_datetime(tx["timestamp"], utc=True)
    cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    tx = tx[stamps < cut].assign(timestamp=stamps[stamps < cut])
    if tx.empty:
        return pd.DataFrame(columns=list(features), dtype=float)
    grouped = tx.groupby("customer_id")
    amount = pd.to_numeric(tx["amount"], errors="coerce").fillna(0.0).clip(lower=0.0)
    spend = amount.groupby(tx["customer_id"]).sum()
    count = grouped.size()
    days = (cut - grouped["timestamp"].max()).dt.total_seconds() / 86_400.0
    raw = {"recency": days, "frequency": count, "monetary": spend, "basket": spend / count,
           "tenure": (cut - grouped["timestamp"].min()).dt.total_seconds() / 86_400.0}
    if "evening" in features:
        evening = (tx["timestamp"].dt.tz_convert(zone).dt.hour >= 18).astype(float)
        raw["evening"] = evening.groupby(tx["customer_id"]).mean()
    if "funnel" in features:
        raw["funnel"] = _funnel_depth(events, cut)
    for name in features:
        kind, _, value = name.partition(":")
        if kind in MIX_COLUMNS and value:
            raw[name] = _mix_share(transactions, stamps < cut, MIX_COLUMNS[kind], value)
    return scaled_vectors(raw, count.index, features)


def scaled_vectors(raw: dict[str, pd.Series], index: pd.Index, features: tuple[str, ...]) -> pd.DataFrame:
    """The vectors from each feature's raw per-customer values (missing: 0), by the public transforms: the one
    step the pandas path and the engine path (:mod:`.customer_scan`) share, so both scale alike."""
    out = pd.DataFrame(index=index)
    for name in features:
        column = raw[name].reindex(index).fillna(0.0).to_numpy()
        f = feature(name)
        values = np.clip(column, 0.0, 1.0) if f.share else scale(column, f.cap)
        out[name] = 1.0 - values if name == "recency" else values
    return out.astype(float)


def _funnel_depth(events: pd.DataFrame | None, cut: pd.Timestamp) -> pd.Series:
    """Per customer with events before ``cut``, the deepest funnel stage reached, scaled to [0, 1]."""
    if events is None or not {"customer_id", "timestamp", "stage"} <= set(events.columns):
        raise ConfigError("the feature funnel needs an events table (customer_id, timestamp, stage); map one in "
                          "the partner's mapping or leave funnel out of --features")
    stamps = pd.to_datetime(events["timestamp"], utc=True)
    ev = events[stamps < cut]
    rank = {stage: i / (len(FUNNEL_STAGES) - 1) for i, stage in enumerate(FUNNEL_STAGES)}
    depth = ev["stage"].astype("string").str.strip().str.lower().map(rank).astype(float).fillna(0.0)
    return depth.groupby(ev["customer_id"]).max()


def _mix_share(transactions: pd.DataFrame, kept: pd.Series, column: str, value: str) -> pd.Series:
    """Per customer, the share of its purchases (before the reference date) whose ``column`` equals ``value``
    (stripped text, exact match; missing values match nothing)."""
    if column not in transactions.columns:
        raise ConfigError(f"the feature {column}:{value} needs a '{column}' column in transactions; map one in the "
                          "partner's mapping or leave it out of --features")
    tx = transactions[kept]
    hit = (tx[column].astype("string").str.strip() == value).fillna(False).astype(float)
    return hit.groupby(tx["customer_id"]).mean()


def describe(centre: np.ndarray, features: tuple[str, ...]) -> str:
    """A centre in a marketer's words: each feature's typical raw value (:func:`raw_value`) placed in the
    feature's declared bands ("very recent", "frequent", "high spend" ...). Bands are on raw values, not on the
    log scale, so that "recent" means the same number of days whatever the cap."""
    words = []
    for value, name in zip(centre, features, strict=True):
        raw = raw_value(float(value), name)
        words.append(next(word for floor, word in feature(name).bands if raw >= floor))
    return ", ".join(words)


def raw_value(value: float, name: str) -> float:
    """The typical raw value a scaled coordinate stands for (inverse of :func:`scale`), for the report."""
    f = feature(name)
    v = min(max(1.0 - value if name == "recency" else value, 0.0), 1.0)
    return float(v) if f.share else float(math.expm1(v * math.log1p(f.cap)))

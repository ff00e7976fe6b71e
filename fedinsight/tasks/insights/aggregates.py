"""Local aggregates for insights: per-customer features, then group counts and sums with bounded contributions.

Why this module exists: it is the only insight code that reads a partner's rows. It turns the partner's
tables into *exact* aggregates whose change when one customer (the privacy unit) is added or removed
is bounded by construction -- every customer counts at most once per cell, at most ``k`` cells where a
customer could otherwise reach many (channels, hours, rows), and values are clamped. The caller
(:mod:`fedinsight.tasks.insights.client`) then adds calibrated OpenDP noise to exactly these numbers, using
the bound each function reports; nothing here is noisy, nothing here leaves the partner.

Everything that decides which group a customer falls into is a *declared* rule (fixed thresholds,
a fixed reference date, declared key lists) and never a data-dependent quantile, so the group
structure itself reveals nothing about any customer. Keys outside a declared list are counted under
``"other"`` so no row silently disappears.

Units: each measure has a ``scale`` (1 for counts, the clamp bound for sums); the reported L1/L2
bounds are for the measures divided by their scales, which is the vector the noise is added to.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import FUNNEL_STAGES
from fedinsight.tasks.insights.customer_features import (
    DERIVED_GROUPS,
    HOURS,
    LTV_TIERS,
    WEEKDAYS,
    Features,
    codes_of,
    local_seconds,
)

OTHER = "other"
"""The key every undeclared value of a grouped column is counted under."""

GROUP_BY_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("region", "gender", "occupation", *DERIVED_GROUPS),
    "transactions": ("channel", "category", "region", "gender", *DERIVED_GROUPS),
    "events": ("campaign", "channel", "stage", "arm", "region", "gender", *DERIVED_GROUPS),
}
"""Allow-list of columns a generic group-by may group on, per table (customer columns are joined in)."""

GROUP_BY_VALUES: dict[str, tuple[str, ...]] = {
    "customers": ("age",),
    "transactions": ("amount", "quantity"),
    "events": (),
}
"""Allow-list of numeric columns a generic group-by may sum or average, per table."""

MAX_CELLS = 20_000

# --- results -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measure:
    """One named array over declared group keys, and the unit that one customer's part is bounded by."""

    name: str
    dims: tuple[tuple[str, tuple[str, ...]], ...]
    values: np.ndarray  # shape = lengths of dims
    scale: float | tuple[float, ...] = 1.0  # one unit, or one per key of the last dim (funnel stages)

    def layout(self) -> dict[str, Any]:
        scale = list(self.scale) if isinstance(self.scale, tuple) else self.scale
        return {"name": self.name, "dims": [[d, list(k)] for d, k in self.dims], "scale": scale}


@dataclass(frozen=True)
class LocalAggregate:
    """Exact, contribution-bounded measures of one query, and the per-customer sensitivity of them all.

    ``l1`` / ``l2`` bound how much the vector ``concat(m.values / m.scale)`` moves when one customer's
    rows are added or removed -- what Laplace (L1) or Gaussian (L2) noise must be calibrated to.
    """

    measures: tuple[Measure, ...]
    l1: float
    l2: float

    def vector(self) -> np.ndarray:
        """The normalised vector the noise is added to."""
        if not self.measures:
            return np.zeros(0)
        return np.concatenate([np.ravel(np.asarray(m.values, dtype=float) / np.asarray(m.scale, dtype=float))
                               for m in self.measures])

    def layout(self) -> list[dict[str, Any]]:
        return [m.layout() for m in self.measures]

    def by_name(self) -> dict[str, Measure]:
        return {m.name: m for m in self.measures}


# --- helpers -------------------------------------------------------------------------------------

def _keys(keys: Sequence[str]) -> tuple[str, ...]:
    return (*keys, OTHER)


def _count_distinct(cust: np.ndarray, cell: np.ndarray, n_cells: int, group: np.ndarray,
                    n_groups: int) -> np.ndarray:
    """Customers per (group of the customer, cell), each customer counted once per cell."""
    if cust.size == 0:
        return np.zeros((n_groups, n_cells))
    key = np.unique(cust.astype(np.int64) * n_cells + cell)
    c, k = np.divmod(key, n_cells)
    return np.bincount(group[c].astype(np.int64) * n_cells + k, minlength=n_groups * n_cells).reshape(
        n_groups, n_cells).astype(float)


def _first_k_keys(cust: np.ndarray, key: np.ndarray, ts: np.ndarray, n_keys: int, k: int) -> np.ndarray:
    """Mask of rows whose (customer, key) is among the customer's first ``k`` distinct keys by time.

    The choice depends on that customer's own rows only, so capping does not couple customers.
    """
    if cust.size == 0:
        return np.zeros(0, dtype=bool)
    pair = cust.astype(np.int64) * n_keys + key
    order = np.lexsort((ts, pair))
    pair_sorted = pair[order]
    first = np.ones(pair_sorted.size, dtype=bool)
    first[1:] = pair_sorted[1:] != pair_sorted[:-1]
    pairs, first_ts = pair_sorted[first], ts[order][first]
    pair_cust = pairs // n_keys
    by_time = np.lexsort((pairs, first_ts, pair_cust))  # per customer, earliest key first
    c_sorted = pair_cust[by_time]
    start = np.ones(c_sorted.size, dtype=bool)
    start[1:] = c_sorted[1:] != c_sorted[:-1]
    run_start = np.maximum.accumulate(np.where(start, np.arange(c_sorted.size), 0))
    rank = np.empty(c_sorted.size, dtype=np.int64)
    rank[by_time] = np.arange(c_sorted.size) - run_start
    allowed = pairs[rank < k]
    return np.isin(pair, allowed, assume_unique=False, kind="sort") if allowed.size < pairs.size else np.ones(
        pair.size, dtype=bool)


def _first_rows(cust: np.ndarray, ts: np.ndarray, cell: np.ndarray, value: np.ndarray, k: int) -> np.ndarray:
    """Mask of each customer's first ``k`` rows by (time, cell, value). Rows equal in all four contribute the
    same, so which of them is kept cannot change a result: the choice is independent of the rows' order."""
    if cust.size == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((value, cell, ts, cust))
    c = cust[order]
    start = np.ones(c.size, dtype=bool)
    start[1:] = c[1:] != c[:-1]
    run_start = np.maximum.accumulate(np.where(start, np.arange(c.size), 0))
    keep = np.empty(c.size, dtype=bool)
    keep[order] = (np.arange(c.size) - run_start) < k
    return keep


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1 (got {value!r})")
    return value


def _key_list(name: str, keys: Any) -> tuple[str, ...]:
    if not isinstance(keys, list | tuple) or not keys or not all(isinstance(k, str) and k for k in keys):
        raise ConfigError(f"{name} must be a non-empty list of declared keys (got {keys!r})")
    if len(set(keys)) != len(keys) or OTHER in keys:
        raise ConfigError(f"{name} must not repeat keys or use the reserved key '{OTHER}' (got {keys!r})")
    return tuple(keys)


# --- the queries ---------------------------------------------------------------------------------

def segment_profile(f: Features, *, by: str = "rfm_segment") -> LocalAggregate:
    """Customers, clamped trailing spend and repeat buyers per segment (one segment per customer)."""
    codes, keys = f.attribute(by)
    g = len(keys)
    dims = ((by, keys),)
    spend = np.clip(f.spend_now, 0.0, f.rules.spend_cap)
    repeat = (f.purchases >= f.rules.repurchase_min_purchases).astype(float)
    return LocalAggregate(
        measures=(
            Measure("customers", dims, np.bincount(codes, minlength=g).astype(float)),
            Measure("spend", dims, np.bincount(codes, weights=spend, minlength=g), scale=f.rules.spend_cap),
            Measure("repurchasers", dims, np.bincount(codes, weights=repeat, minlength=g)),
        ),
        l1=3.0, l2=math.sqrt(3.0),
    )


def ltv_tiers(f: Features) -> LocalAggregate:
    """Customers and clamped value per LTV tier, now (trailing window) and in the window before."""
    dims = (("ltv_tier", LTV_TIERS),)
    g, cap = len(LTV_TIERS), f.rules.value_cap
    now = np.clip(f.spend_now, 0.0, cap)
    prev = np.clip(f.spend_prev, 0.0, cap)
    return LocalAggregate(
        measures=(
            Measure("customers", dims, np.bincount(f.tier_now, minlength=g).astype(float)),
            Measure("value", dims, np.bincount(f.tier_now, weights=now, minlength=g), scale=cap),
            Measure("customers_prev", dims, np.bincount(f.tier_prev, minlength=g).astype(float)),
            Measure("value_prev", dims, np.bincount(f.tier_prev, weights=prev, minlength=g), scale=cap),
        ),
        l1=4.0, l2=2.0,
    )


STAGE_WEIGHTS: tuple[float, ...] = tuple(2.0 * x / 1.3 for x in (0.2, 0.4, 0.7, 1.0))
"""Weight of each funnel stage's count in the noised vector (exposure, click, participate, convert): 0.31, 0.62,
1.08, 1.54.

Why: a step rate's error is the noise on its two counts divided by the earlier stage's count, and the
counts shrink down the funnel, so equal noise on every stage leaves the deep step rates (convert /
participate) the worst. Releasing ``w_s x count_s`` with noise sd ``z L2`` gives stage ``s`` noise sd
``z L2 / w_s``. One customer moves each stage count of a group by at most 1, so the vector moves by at most
``sqrt(sum w_s^2)`` per group: ``sum w_s^2 = 4`` keeps that bound (and the charge) that of unweighted counts.
The weights rise down the funnel, as the counts fall: exposures (the largest counts, dividing only clicks and
conversion) carry 3.3x the noise of unweighted counts, clicks 1.6x, participations 0.93x and conversions
0.65x -- a conversion's noise weighs fully on convert / participate, a participation's only times that rate
(< 1). Measured at 1 M customers, 10 partners, epsilon 1, delta 1e-7, distributed noise: the worst step rate
falls from 0.55 to 0.46 pp on average (benchmarks/insights_distributed.py; docs/insights.md). Each cell is still
suppressed on its own noisy count; the noisier exposures are the counts that clear the bar most easily. Public
and data-independent."""


def funnel(f: Features, *, by: str = "channel", channels: Sequence[str] = (),
           max_channels_per_customer: int = 2) -> LocalAggregate:
    """Customers reaching each funnel stage, by channel or by a customer grouping.

    By channel, a customer counts in at most ``max_channels_per_customer`` channels (their earliest);
    by segment, a customer is in one group. Either way at most once per (group, stage). Stage ``s`` is
    released in units of ``1 / STAGE_WEIGHTS[s]`` (see :data:`STAGE_WEIGHTS`), so the bounds are
    ``L2 = sqrt(m sum w_s^2)`` and ``L1 = m sum w_s`` with ``m`` the groups one customer can be in.
    """
    ev = f.events
    stages = f.event_stage
    n_st = len(FUNNEL_STAGES)
    if by == "channel":
        keys = _keys(_key_list("channels", list(channels)))
        m = _positive_int("max_channels_per_customer", max_channels_per_customer)
        ch = codes_of(ev.frame["channel"], keys[:-1])
        keep = _first_k_keys(ev.cust, ch, ev.ts, len(keys), m)
        counts = _count_distinct(ev.cust[keep], ch[keep] * n_st + stages[keep], len(keys) * n_st,
                                 np.zeros(f.n, dtype=np.int8), 1).reshape(len(keys), n_st)
    else:
        group, keys = f.attribute(by)
        counts = _count_distinct(ev.cust, stages.astype(np.int64), n_st, group, len(keys))
        m = 1
    w = STAGE_WEIGHTS[:n_st]
    dims = ((by, keys), ("stage", FUNNEL_STAGES))
    return LocalAggregate((Measure("customers", dims, counts, scale=tuple(1.0 / x for x in w)),),
                          l1=m * sum(w), l2=math.sqrt(m * sum(x * x for x in w)))


def ab_test(f: Features, *, campaigns: Sequence[str] = (), arms: Sequence[str] = ("A", "B")) -> LocalAggregate:
    """Per declared campaign and arm: customers exposed, and of those, customers who converted.

    A customer's arm in a campaign is the arm of their first exposure there, so each customer adds at
    most one to ``exposed`` and one to ``converted`` per campaign.
    """
    ev = f.events
    camps = _key_list("campaigns", list(campaigns))
    arm_keys = _key_list("arms", list(arms))
    stages = f.event_stage
    c = codes_of(ev.frame["campaign"], camps, other=False)
    a = codes_of(ev.frame["arm"], arm_keys, other=False) if "arm" in ev.frame.columns else np.full(c.size, -1)
    n_c, n_a = len(camps), len(arm_keys)
    exposed = np.zeros((n_c, n_a))
    converted = np.zeros((n_c, n_a))
    expo = (stages == 0) & (c >= 0) & (a >= 0)
    if expo.any():
        cust, camp, arm, ts = ev.cust[expo], c[expo], a[expo], ev.ts[expo]
        order = np.lexsort((ts, cust * n_c + camp))
        key = (cust * n_c + camp)[order]
        first = np.ones(key.size, dtype=bool)
        first[1:] = key[1:] != key[:-1]
        first_key, first_arm = key[first], arm[order][first]  # sorted unique (customer, campaign) keys
        exposed = np.bincount((first_key % n_c) * n_a + first_arm, minlength=n_c * n_a).reshape(n_c, n_a)
        conv = (stages == FUNNEL_STAGES.index("convert")) & (c >= 0)
        conv_key = np.unique(ev.cust[conv] * n_c + c[conv])
        pos = np.searchsorted(first_key, conv_key)
        hit = (pos < first_key.size) & (first_key[np.minimum(pos, first_key.size - 1)] == conv_key)
        converted = np.bincount((conv_key[hit] % n_c) * n_a + first_arm[pos[hit]], minlength=n_c * n_a).reshape(
            n_c, n_a)
    dims = (("campaign", camps), ("arm", arm_keys))
    return LocalAggregate(
        (Measure("exposed", dims, exposed.astype(float)), Measure("converted", dims, converted.astype(float))),
        l1=2.0 * n_c, l2=math.sqrt(2.0 * n_c),
    )


SLOTS: tuple[str, ...] = tuple(f"{d}-{h}" for d in WEEKDAYS for h in HOURS)
"""The 168 weekday x hour slots of the golden-hours heatmap, ``"mon-00"`` ... ``"sun-23"`` (weekday-major)."""


def golden_hours(f: Features, *, by: str = "rfm_segment", stages: Sequence[str] = ("click", "participate", "convert"),
                 max_hours_per_customer: int = 3, max_weekdays_per_customer: int = 2,
                 max_slots_per_customer: int = 3, heatmap: bool = True, timezone: str = "local",
                 channels: Sequence[str] = (), max_channels_per_customer: int = 2) -> LocalAggregate:
    """Customers responding at each hour of day, on each weekday and (``heatmap``) in each weekday x hour
    slot, per group, in the customer's local time.

    ``timezone``: ``"local"`` reads hours in the partner's own zone (its customers' local time), anything
    else is an IANA zone the analyst chose for every partner. Timestamps are naive UTC; daylight saving is
    applied per event.

    Per customer group (a segment): each customer counts once per hour (their first ``max_hours_per_customer``
    distinct hours), once per weekday (first ``max_weekdays_per_customer``) and once per slot (first
    ``max_slots_per_customer`` distinct slots by time). The three measures are released together, so one
    customer moves the vector by at most ``k_h + k_w + k_s`` cells by one each: that is the L1 bound, its
    square root the L2 bound. Without the heatmap ``k_s`` drops out of the bounds.

    ``by = "channel"`` (the best hour per channel): the groups are the declared channels plus ``other``; a
    customer counts in their first ``max_channels_per_customer`` channels (``m``) and, across them, in at most
    ``m x k`` (channel, hour) pairs -- and likewise for weekdays and slots -- so the bounds are ``m`` times the
    segment bounds.
    """
    ev = f.events
    k_h = _positive_int("max_hours_per_customer", max_hours_per_customer)
    k_w = _positive_int("max_weekdays_per_customer", max_weekdays_per_customer)
    k_s = _positive_int("max_slots_per_customer", max_slots_per_customer)
    if not isinstance(heatmap, bool):
        raise ConfigError(f"heatmap must be true or false (got {heatmap!r})")
    wanted = [FUNNEL_STAGES.index(s) for s in _key_list("stages", list(stages)) if s in FUNNEL_STAGES]
    if len(wanted) != len(stages):
        raise ConfigError(f"stages must be among {', '.join(FUNNEL_STAGES)} (got {list(stages)})")
    sel = np.isin(f.event_stage, wanted)
    cust, ts = ev.cust[sel], ev.ts[sel]
    wall = local_seconds(ts, f.zone(str(timezone)))
    hour = (wall // 3600) % 24
    weekday = (wall // 86_400 + 3) % 7  # 1970-01-01 was a Thursday
    if by == "channel":
        keys = _keys(_key_list("channels", list(channels)))
        m = _positive_int("max_channels_per_customer", max_channels_per_customer)
        ch = codes_of(ev.frame["channel"], keys[:-1])[sel]
        keep = _first_k_keys(cust, ch, ts, len(keys), m)
        cust, ts, hour, weekday, ch = cust[keep], ts[keep], hour[keep], weekday[keep], ch[keep]
        n_groups, per_group = len(keys), m

        def counts(cell: np.ndarray, n_cells: int, k: int) -> np.ndarray:
            pair = ch * n_cells + cell
            kept = _first_k_keys(cust, pair, ts, n_groups * n_cells, m * k)
            return _count_distinct(cust[kept], pair[kept], n_groups * n_cells, np.zeros(max(f.n, 1), dtype=np.int8),
                                   1).reshape(n_groups, n_cells)
    else:
        if channels:
            raise ConfigError("channels are only used by golden hours by channel")
        group, keys = f.attribute(by)
        per_group = 1

        def counts(cell: np.ndarray, n_cells: int, k: int) -> np.ndarray:
            kept = _first_k_keys(cust, cell, ts, n_cells, k)
            return _count_distinct(cust[kept], cell[kept], n_cells, group, len(keys))

    measures = [Measure("customers_by_hour", ((by, keys), ("hour", HOURS)), counts(hour, 24, k_h)),
                Measure("customers_by_weekday", ((by, keys), ("weekday", WEEKDAYS)), counts(weekday, 7, k_w))]
    cells = k_h + k_w
    if heatmap:
        measures.append(Measure("customers_by_slot", ((by, keys), ("slot", SLOTS)),
                                counts(weekday * 24 + hour, len(SLOTS), k_s)))
        cells += k_s
    return LocalAggregate(tuple(measures), l1=float(per_group * cells), l2=math.sqrt(per_group * cells))


def _response_counts(f: Features, key: np.ndarray, n_keys: int, m: int, by: str,
                     dims: tuple[tuple[str, Sequence[str]], ...]) -> LocalAggregate:
    """Customers exposed and customers who responded (clicked or beyond) per group and key of each event row.

    The one count behind channel response and channel x creative (they differ only in the key: a channel, or a
    channel-creative pair): a customer keeps their first ``m`` keys by time, chosen from their own rows only, and
    counts once as exposed and once as responded per key, so the L1 bound is ``2 m`` and the L2 bound its root.
    ``dims`` names the key axes after the group's; the counts are reshaped to them.
    """
    ev = f.events
    keep = _first_k_keys(ev.cust, key, ev.ts, n_keys, m)
    group, gkeys = f.attribute(by)
    cust, k, st = ev.cust[keep], key[keep], f.event_stage[keep]
    shape = (len(gkeys), *(len(values) for _, values in dims))
    exposed = _count_distinct(cust[st == 0], k[st == 0], n_keys, group, len(gkeys)).reshape(shape)
    responded = _count_distinct(cust[st >= 1], k[st >= 1], n_keys, group, len(gkeys)).reshape(shape)
    all_dims = ((by, gkeys), *dims)
    return LocalAggregate((Measure("exposed", all_dims, exposed), Measure("responded", all_dims, responded)),
                          l1=2.0 * m, l2=math.sqrt(2.0 * m))


def channel_response(f: Features, *, by: str = "rfm_segment", channels: Sequence[str] = (),
                     max_channels_per_customer: int = 2) -> LocalAggregate:
    """Per channel and group: customers exposed, and customers who responded (clicked or beyond)."""
    keys = _keys(_key_list("channels", list(channels)))
    m = _positive_int("max_channels_per_customer", max_channels_per_customer)
    ch = codes_of(f.events.frame["channel"], keys[:-1])
    return _response_counts(f, ch, len(keys), m, by, (("channel", keys),))


CREATIVE = "creative"
"""The canonical campaign-events column a partner's mapping names for its creatives."""


def channel_creative(f: Features, *, by: str = "rfm_segment", channels: Sequence[str] = (),
                     creatives: Sequence[str] = (), max_pairs_per_customer: int = 2) -> LocalAggregate:
    """Per group, channel and creative: customers exposed, and customers who responded (clicked or beyond).

    A customer counts in at most ``max_pairs_per_customer`` (channel, creative) pairs -- their first by time,
    chosen from their own rows only -- once as exposed and once as responded per pair."""
    ev = f.events
    if CREATIVE not in ev.frame.columns:
        raise ConfigError("this partner's campaign events have no creative column: map the column that names the "
                          "creative (ad or message variant) to `creative` in its mapping.toml")
    ch_keys = _keys(_key_list("channels", list(channels)))
    cr_keys = _keys(_key_list("creatives", list(creatives)))
    m = _positive_int("max_pairs_per_customer", max_pairs_per_customer)
    n_pairs = len(ch_keys) * len(cr_keys)
    if n_pairs * max(len(f.attribute(by)[1]), 1) > MAX_CELLS:
        raise ConfigError(f"channel x creative x {by} has more than {MAX_CELLS} cells: declare fewer keys")
    pair = codes_of(ev.frame["channel"], ch_keys[:-1]) * len(cr_keys) + codes_of(ev.frame[CREATIVE], cr_keys[:-1])
    return _response_counts(f, pair, n_pairs, m, by, (("channel", ch_keys), ("creative", cr_keys)))


def group_by(f: Features, *, table: str, group_by: Sequence[str], keys: dict[str, list[str]] | None = None,
             value: str | None = None, aggregates: Sequence[str] = ("count",), bounds: Sequence[float] | None = None,
             max_rows_per_customer: int = 10) -> LocalAggregate:
    """Generic DP group-by over allow-listed columns: customers, rows (count) and clamped sums per group.

    Each customer keeps at most ``max_rows_per_customer`` rows (their first in time; rows at the same second in
    the order of their cell and clamped value, so the choice does not depend on how the rows are stored or which
    engine read them), values are clamped to ``bounds``; a group's key list is declared (derived groupings have
    fixed keys).
    """
    if table not in GROUP_BY_COLUMNS:
        raise ConfigError(f"group-by table must be one of {', '.join(GROUP_BY_COLUMNS)} (got {table!r})")
    cols = list(group_by)
    if not cols or len(set(cols)) != len(cols):
        raise ConfigError("group_by needs one or more distinct columns")
    bad = [c for c in cols if c not in GROUP_BY_COLUMNS[table]]
    if bad:
        raise ConfigError(f"column(s) {', '.join(bad)} may not be grouped on in {table}; "
                          f"allowed: {', '.join(GROUP_BY_COLUMNS[table])}")
    aggs = tuple(aggregates)
    if not aggs or any(a not in ("count", "sum", "mean") for a in aggs):
        raise ConfigError(f"aggregates must be among count, sum, mean (got {list(aggs)})")
    needs_value = any(a in ("sum", "mean") for a in aggs)
    if needs_value:
        if value not in GROUP_BY_VALUES[table]:
            allowed = ", ".join(GROUP_BY_VALUES[table]) or "none"
            raise ConfigError(f"value column {value!r} may not be summed in {table}; allowed: {allowed}")
        if bounds is None or len(bounds) != 2 or not all(math.isfinite(float(b)) for b in bounds) \
                or not float(bounds[0]) < float(bounds[1]):
            raise ConfigError(f"sum/mean need declared bounds [low, high] with low < high (got {bounds!r})")
    cap = 1 if table == "customers" else _positive_int("max_rows_per_customer", max_rows_per_customer)
    declared = dict(keys or {})

    if table == "customers":
        frame, cust, ts = f.customers, np.arange(f.n), np.zeros(f.n, dtype=np.int64)
    else:
        rows = f.transactions if table == "transactions" else f.events
        frame, cust, ts = rows.frame, rows.cust, rows.ts

    dims: list[tuple[str, tuple[str, ...]]] = []
    cell = np.zeros(cust.size, dtype=np.int64)
    for col in cols:
        if col in DERIVED_GROUPS:
            codes_c, k = f.attribute(col)
            codes, dim_keys = codes_c[cust].astype(np.int64), k
        else:
            if col not in declared:
                raise ConfigError(f"declare the keys of column '{col}' (group keys must not come from the data)")
            dim_keys = _keys(_key_list(f"keys of {col}", declared[col]))
            if col in frame.columns:
                codes = codes_of(frame[col], dim_keys[:-1])
            elif col in f.customers.columns:  # a customer attribute joined onto the rows
                codes = codes_of(f.customers[col], dim_keys[:-1])[cust]
            else:  # the partner does not have the column: everything is "other"
                codes = np.full(cust.size, len(dim_keys) - 1, dtype=np.int64)
        dims.append((col, dim_keys))
        cell = cell * len(dim_keys) + codes
    n_cells = int(np.prod([len(k) for _, k in dims]))
    if n_cells > MAX_CELLS:
        raise ConfigError(f"the group-by has {n_cells} cells; at most {MAX_CELLS} are allowed")
    clamped = np.zeros(cust.size)
    if needs_value:
        lo, hi = float(bounds[0]), float(bounds[1])  # type: ignore[index]
        raw = frame[value].to_numpy(dtype=float, na_value=np.nan)  # type: ignore[index]
        clamped = np.clip(np.nan_to_num(raw, nan=0.0), lo, hi)  # a missing value counts as 0, then clamped
    if table != "customers":
        keep = _first_rows(cust, ts, cell, clamped, cap)
        if not keep.all():
            cust, cell, clamped = cust[keep], cell[keep], clamped[keep]
    shape = tuple(len(k) for _, k in dims)
    dims_t = tuple(dims)
    customers = _count_distinct(cust, cell, n_cells, np.zeros(max(f.n, 1), dtype=np.int8), 1).reshape(shape)
    measures = [Measure("customers", dims_t, customers)]
    l1, l2sq = float(cap), float(cap)
    if "count" in aggs or "mean" in aggs:
        measures.append(Measure("count", dims_t, np.bincount(cell, minlength=n_cells).reshape(shape).astype(float)))
        l1, l2sq = l1 + cap, l2sq + cap**2
    if needs_value:
        scale = max(abs(lo), abs(hi))
        measures.append(Measure("sum", dims_t, np.bincount(cell, weights=clamped, minlength=n_cells).reshape(shape),
                                scale=scale))
        l1, l2sq = l1 + cap, l2sq + cap**2
    return LocalAggregate(tuple(measures), l1=l1, l2=math.sqrt(l2sq))


LOCAL_QUERIES: dict[str, Callable[..., LocalAggregate]] = {
    "segment_profile": segment_profile,
    "ltv_tiers": ltv_tiers,
    "funnel": funnel,
    "ab_test": ab_test,
    "golden_hours": golden_hours,
    "channel_response": channel_response,
    "channel_creative": channel_creative,
    "group_by": group_by,
}
"""Query kind -> local computation; the parameters are the query spec's fields."""

NEEDS_EVENTS = frozenset({"funnel", "ab_test", "golden_hours", "channel_response", "channel_creative"})


def compute(kind: str, features: Features, params: dict[str, Any]) -> LocalAggregate:
    """Run one query kind with its declared parameters (unknown kinds or parameters are refused)."""
    func = LOCAL_QUERIES.get(kind)
    if func is None:
        raise ConfigError(f"unknown insight query kind '{kind}' (known: {', '.join(LOCAL_QUERIES)})")
    accepted = set(inspect.signature(func).parameters) - {"f"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(
            f"query kind '{kind}' does not take {', '.join(unknown)}; it takes {', '.join(sorted(accepted))}"
        )
    return func(features, **params)

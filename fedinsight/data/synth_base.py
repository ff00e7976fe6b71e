"""The synthetic retailer's base generator: planted parameters, the validated plan and one block of customers.

Why a module of its own: :mod:`fedinsight.data.synth` describes what is planted and how it is written; this module
holds the parameters and the maths that draw it. Every random number comes from a ``numpy.random.Generator`` stream
derived from the seed, one stream per block of :data:`BLOCK_CUSTOMERS` customers (the unit of determinism), so the
output does not depend on how many blocks :mod:`fedinsight.data.synth_partition` holds at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fedinsight.core.errors import ConfigError
from fedinsight.data import synth_creatives as sc
from fedinsight.data import synth_uplift as su
from fedinsight.data.schema import FUNNEL_STAGES

# ---------------------------------------------------------------------------------------------------
# Planted parameters (all recorded in the ground truth)
# ---------------------------------------------------------------------------------------------------

BLOCK_CUSTOMERS = 5_000
"""Customers per random-number block; the unit of determinism (see the module docstring)."""

SEGMENTS: tuple[str, ...] = ("champions", "loyal", "potential", "at_risk", "hibernating")
SEGMENT_SHARES = np.array([0.10, 0.20, 0.25, 0.20, 0.25])
PURCHASES_PER_YEAR = np.array([24.0, 12.0, 5.0, 3.0, 0.8])  # mean of λ per segment
GAMMA_SHAPE = 2.0  # λ ~ Gamma(shape, mean / shape): heterogeneity within a segment
AMOUNT_MEAN = np.array([95.0, 70.0, 45.0, 60.0, 35.0])  # mean order value per segment
AMOUNT_SIGMA = 0.7  # log-scale sd of order value
AGE_MEAN = np.array([42.0, 47.0, 33.0, 45.0, 52.0])
AGE_SD = 13.0
GOLDEN_HOURS = np.array([20, 18, 9, 22, 12])  # peak hour of day of funnel events, per segment
GOLDEN_HOUR_SD = 2.0  # hours
GOLDEN_HOUR_NOISE = 0.15  # share of events at a uniformly random hour

CATEGORIES: tuple[str, ...] = ("apparel", "electronics", "grocery", "home", "beauty", "sports")
FAVOURITE_SHARE = 0.6  # share of purchases in a favourite category
FAVOURITE_BOOST = 6.0  # interaction weight multiplier for items in a favourite category
SECOND_FAVOURITE_P = 0.5  # probability of a second favourite category
ZIPF_EXPONENT = 1.1  # item popularity ∝ rank^-exponent
INTERACTIONS_BASE = 1.0  # interactions ~ Poisson(base + per_purchase * expected purchases)
INTERACTIONS_PER_PURCHASE = 0.5
INTERACTIONS_CAP = 300

TX_CHANNELS: tuple[str, ...] = ("store", "web", "app")
TX_CHANNEL_P = np.array([0.45, 0.35, 0.20])
QUANTITY_EXTRA_MEAN = 0.4  # quantity = 1 + Poisson(this)

GENDERS: tuple[str, ...] = ("F", "M", "X")
GENDER_P = np.array([0.49, 0.49, 0.02])
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central", "northeast", "southwest", "coastal")
REGION_P = np.array([0.18, 0.16, 0.15, 0.14, 0.12, 0.10, 0.08, 0.07])
CONSENT_P = 0.9
NEW_SIGNUP_SHARE = 0.25  # customers who sign up inside the window (the rest up to 3 years before)

CAMPAIGN_CHANNELS: tuple[str, ...] = ("email", "sms", "app_push", "social", "search")
CAMPAIGN_CHANNEL_P = np.array([0.35, 0.15, 0.20, 0.20, 0.10])
EXPOSURE_P = 0.6  # probability an eligible customer is exposed to a campaign
CAMPAIGN_MAX_DAYS = 60
FUNNEL_STEPS: tuple[str, ...] = FUNNEL_STAGES[1:]  # click | exposure, participate | click, convert | ...
# base step rates per channel (rows) for click, participate, convert (columns)
BASE_STEP_RATES = np.array(
    [
        [0.12, 0.45, 0.35],  # email
        [0.08, 0.40, 0.30],  # sms
        [0.15, 0.50, 0.40],  # app_push
        [0.06, 0.35, 0.25],  # social
        [0.25, 0.55, 0.45],  # search
    ]
)
# segment multipliers (rows) on the same three steps
SEGMENT_STEP_MULT = np.array(
    [
        [1.6, 1.3, 1.4],  # champions
        [1.3, 1.2, 1.2],  # loyal
        [1.0, 1.0, 1.0],  # potential
        [0.8, 0.9, 0.8],  # at_risk
        [0.5, 0.7, 0.6],  # hibernating
    ]
)
MAX_STEP_RATE = 0.95
AB_LIFT_FIRST_CAMPAIGN = 1.3  # multiplicative lift on convert | participate for arm B in campaign-1
NEXT_STAGE_DAY_P = np.array([0.6, 0.3, 0.1])  # next stage happens 0, 1 or 2 days after the previous

FIRST_NAMES: tuple[str, ...] = (
    "James", "Mary", "Wei", "Fatima", "Carlos", "Anna", "Hiroshi", "Priya", "Liam", "Sofia", "Ahmed",
    "Elena", "Noah", "Mei", "Lucas", "Amara", "Ivan", "Chloe", "Mateo", "Yuki", "Omar", "Grace",
    "Diego", "Leila", "Ethan", "Nadia", "Jonas", "Aisha", "Ravi", "Emma",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Wang", "Garcia", "Khan", "Mueller", "Rossi", "Tanaka", "Patel", "Silva", "Kim", "Novak",
    "Dubois", "Jensen", "Cohen", "Okafor", "Nguyen", "Ivanova", "Lopez", "Murphy", "Chen", "Haddad",
    "Larsen", "Kowalski", "Sato", "Brown", "Moreau", "Costa", "Ali", "Schmidt", "Yilmaz",
)  # fmt: skip
ITEM_ADJECTIVES: tuple[str, ...] = (
    "Classic", "Eco", "Premium", "Compact", "Deluxe", "Everyday", "Smart", "Vintage", "Urban", "Pro",
)  # fmt: skip
ITEM_NOUNS: dict[str, tuple[str, ...]] = {
    "apparel": ("T-Shirt", "Jacket", "Jeans", "Scarf", "Sneakers"),
    "electronics": ("Headphones", "Speaker", "Charger", "Tablet", "Camera"),
    "grocery": ("Coffee", "Olive Oil", "Granola", "Tea", "Chocolate"),
    "home": ("Lamp", "Pillow", "Vase", "Blanket", "Kettle"),
    "beauty": ("Serum", "Lipstick", "Shampoo", "Perfume", "Face Cream"),
    "sports": ("Yoga Mat", "Dumbbells", "Bike Helmet", "Water Bottle", "Tennis Racket"),
}
ITEM_PRICE_MEAN: dict[str, float] = {
    "apparel": 40.0, "electronics": 150.0, "grocery": 12.0, "home": 45.0, "beauty": 30.0, "sports": 55.0,
}  # fmt: skip

_DAY = 86_400
_YEAR = 365.25 * _DAY
_STREAM_GLOBAL, _STREAM_ITEMS, _STREAM_BLOCK, _STREAM_OFFERS, _STREAM_CREATIVES = 0, 1, 2, 3, 4


@dataclass
class SynthConfig:
    """What to generate. Defaults: 10,000 customers over three partners, two years of history."""

    customers: int = 10_000
    partners: int = 3
    seed: int = 0
    items: int = 500  # catalogue size
    start: str = "2024-01-01"  # history window; must be in the past
    end: str = "2025-12-31"
    cutoff: str = "2025-06-30"  # calibration/holdout split used for the planted propensity signal
    campaigns: int = 2
    offers: bool = False  # plant the uplift ``offers`` campaign (fedinsight.data.synth_uplift)
    creatives: bool = False  # plant creatives on the funnel campaigns (fedinsight.data.synth_creatives)
    fmt: str = "parquet"  # or "csv"
    chunk_customers: int = 200_000


# ---------------------------------------------------------------------------------------------------
# Plan: validated configuration plus the global (non-per-customer-block) draws
# ---------------------------------------------------------------------------------------------------


@dataclass
class Campaign:
    name: str
    start: int  # epoch seconds
    end: int
    lift: float


@dataclass
class Plan:
    config: SynthConfig
    start: int
    end: int
    cutoff: int
    partner_of: np.ndarray  # partner index per global customer index
    partner_shares: np.ndarray
    items: pa.Table
    item_cat_sorted_cdf: np.ndarray  # see _sample_items
    item_order: np.ndarray
    item_cat: np.ndarray
    category_mass: np.ndarray  # Zipf mass per category (sums to 1)
    campaigns: list[Campaign]
    step_rates: np.ndarray  # [channel, segment, step]
    id_width: int
    phone_a: int
    phone_b: int
    blocks_per_chunk: int = 1
    partner_names: list[str] = field(default_factory=list)


def _int_option(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _parse_time(name: str, value: Any) -> int:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"{name} is not a date/time: {value!r} (expected e.g. 2025-06-30)") from exc
    if ts is pd.NaT:
        raise ConfigError(f"{name} is not a date/time: {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.to_datetime64().astype("datetime64[s]").astype(np.int64))


def make_plan(config: SynthConfig) -> Plan:
    n = _int_option("customers", config.customers, 1)
    k = _int_option("partners", config.partners, 1)
    if k > n:
        raise ConfigError(f"partners ({k}) cannot exceed customers ({n}): every partner needs a customer")
    seed = _int_option("seed", config.seed, 0)
    n_items = _int_option("items", config.items, len(CATEGORIES))
    n_campaigns = _int_option("campaigns", config.campaigns, 0)
    chunk = _int_option("chunk_customers", config.chunk_customers, 1)
    if config.fmt not in ("parquet", "csv"):
        raise ConfigError(f"fmt must be 'parquet' or 'csv', got {config.fmt!r}")
    start, end, cutoff = (_parse_time(f, getattr(config, f)) for f in ("start", "end", "cutoff"))
    now = int(time.time())
    if not start < end:
        raise ConfigError(f"start ({config.start}) must be before end ({config.end})")
    if end > now:
        raise ConfigError(f"end ({config.end}) is in the future: synthetic history must lie in the past")
    if not start < cutoff < end:
        raise ConfigError(f"cutoff ({config.cutoff}) must lie strictly between start and end")
    if end - start < 2 * _DAY:
        raise ConfigError("the window from start to end must span at least two days")

    rng = np.random.default_rng([seed, _STREAM_GLOBAL])
    shares = rng.dirichlet(np.full(k, 5.0))
    partner_of = rng.choice(k, size=n, p=shares).astype(np.int32)
    forced = rng.choice(n, size=k, replace=False)  # every partner gets at least one customer
    partner_of[forced] = np.arange(k, dtype=np.int32)
    phone_space = 10 ** max(8, len(str(n)))
    phone_a = int(rng.integers(1, phone_space // 10)) * 10 + 3  # odd, not divisible by 5 -> bijection
    phone_b = int(rng.integers(0, phone_space))

    items, item_cat, pop = _make_items(np.random.default_rng([seed, _STREAM_ITEMS]), n_items)
    order = np.argsort(item_cat, kind="stable")
    cdf = np.empty(n_items)
    mass = np.zeros(len(CATEGORIES))
    for c in range(len(CATEGORIES)):
        members = order[item_cat[order] == c]
        pos = np.flatnonzero(item_cat[order] == c)
        within = np.cumsum(pop[members]) / pop[members].sum()
        within[-1] = 1.0
        cdf[pos] = c + within
        mass[c] = pop[members].sum()
    mass /= mass.sum()

    campaigns = []
    span = end - start
    for c in range(n_campaigns):
        slot = span / n_campaigns
        c_start = start + int(c * slot + 0.05 * slot)
        midnight = -(-c_start // _DAY) * _DAY  # campaigns start at midnight so event hours stay undistorted
        c_start = midnight if midnight < end else c_start
        c_end = min(end, c_start + max(1, int(min(CAMPAIGN_MAX_DAYS * _DAY, 0.5 * slot))))
        campaigns.append(Campaign(f"campaign-{c + 1}", c_start, c_end, AB_LIFT_FIRST_CAMPAIGN if c == 0 else 1.0))
    step_rates = np.minimum(BASE_STEP_RATES[:, None, :] * SEGMENT_STEP_MULT[None, :, :], MAX_STEP_RATE)

    return Plan(
        config=config,
        start=start,
        end=end,
        cutoff=cutoff,
        partner_of=partner_of,
        partner_shares=shares,
        items=items,
        item_cat_sorted_cdf=cdf,
        item_order=order,
        item_cat=item_cat,
        category_mass=mass,
        campaigns=campaigns,
        step_rates=step_rates,
        id_width=max(8, len(str(n))),
        phone_a=phone_a,
        phone_b=phone_b,
        blocks_per_chunk=max(1, chunk // BLOCK_CUSTOMERS),
        partner_names=[f"partner-{p}" for p in range(k)],
    )


def _make_items(rng: np.random.Generator, n_items: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The catalogue: every category has items; popularity is Zipf over a random ranking."""
    cat = rng.permutation(np.arange(n_items) % len(CATEGORIES)).astype(np.int64)
    rank = rng.permutation(n_items) + 1
    pop = rank.astype(np.float64) ** -ZIPF_EXPONENT
    adjective = rng.integers(0, len(ITEM_ADJECTIVES), n_items)
    noun = rng.integers(0, 5, n_items)
    titles = [
        f"{ITEM_ADJECTIVES[a]} {ITEM_NOUNS[CATEGORIES[c]][m]}" for a, c, m in zip(adjective, cat, noun, strict=True)
    ]
    price_mean = np.array([ITEM_PRICE_MEAN[c] for c in CATEGORIES])[cat]
    price = np.round(rng.lognormal(np.log(price_mean) - 0.125, 0.5), 2)
    width = max(4, len(str(n_items)))
    cat_names = pa.array(CATEGORIES).take(pa.array(cat))
    table = pa.table(
        {
            "item_id": _ids("I", np.arange(1, n_items + 1), width),
            "title": pa.array(titles, pa.string()),
            "category": cat_names,
            "price": pa.array(price, pa.float64()),
            "genres": cat_names,
        }
    )
    return table, cat, pop


# ---------------------------------------------------------------------------------------------------
# Per-block generation
# ---------------------------------------------------------------------------------------------------


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    text = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, text, "")


def _timestamps(seconds: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(seconds, dtype=np.int64) * 1_000_000, pa.timestamp("us"))


def _golden_hours(rng: np.random.Generator, seg: np.ndarray) -> np.ndarray:
    hours = np.rint(GOLDEN_HOURS[seg] + rng.normal(0.0, GOLDEN_HOUR_SD, seg.size)).astype(np.int64) % 24
    noise = rng.random(seg.size) < GOLDEN_HOUR_NOISE
    hours[noise] = rng.integers(0, 24, int(noise.sum()))
    return hours


def _uniform_after(rng: np.random.Generator, t0: np.ndarray, end: int) -> np.ndarray:
    """Whole seconds uniformly in (t0, end]."""
    span = end - t0
    return t0 + 1 + np.floor(rng.random(t0.size) * span).astype(np.int64).clip(0, np.maximum(span - 1, 0))


@dataclass
class Block:
    tables: dict[str, tuple[pa.Table, np.ndarray]]  # name -> (table, partner index per row)
    truth: pa.Table


def generate_block(plan: Plan, b: int, offsets: dict[str, int]) -> Block:
    """Generate customers [b*BLOCK, (b+1)*BLOCK) with their own random stream."""
    cfg = plan.config
    g0 = b * BLOCK_CUSTOMERS
    g1 = min(cfg.customers, g0 + BLOCK_CUSTOMERS)
    n = g1 - g0
    rng = np.random.default_rng([cfg.seed, _STREAM_BLOCK, b])
    gidx = np.arange(g0, g1, dtype=np.int64)
    partner = plan.partner_of[g0:g1]
    cust_ids = _ids("C", gidx + 1, plan.id_width)

    # --- hidden truth -------------------------------------------------------------------------
    seg = np.searchsorted(np.cumsum(SEGMENT_SHARES), rng.random(n), side="right").clip(0, len(SEGMENTS) - 1)
    lam = rng.gamma(GAMMA_SHAPE, PURCHASES_PER_YEAR[seg] / GAMMA_SHAPE)  # purchases per year
    new = rng.random(n) < NEW_SIGNUP_SHARE
    window = plan.end - plan.start
    before = plan.start - 1 - np.floor(rng.random(n) * 3 * 365 * _DAY).astype(np.int64)
    inside = plan.start + np.floor(rng.random(n) * 0.9 * window).astype(np.int64)
    signup = np.where(new, inside, before)
    active_from = np.maximum(signup, plan.start)
    expected = lam * (plan.end - active_from) / _YEAR
    hold_years = (plan.end - np.maximum(active_from, plan.cutoff)) / _YEAR
    p_after_cutoff = 1.0 - np.exp(-lam * hold_years)
    fav1 = rng.integers(0, len(CATEGORIES), n)
    has2 = rng.random(n) < SECOND_FAVOURITE_P
    fav2 = np.where(has2, (fav1 + rng.integers(1, len(CATEGORIES), n)) % len(CATEGORIES), fav1)
    fav = np.zeros((n, len(CATEGORIES)), dtype=bool)
    fav[np.arange(n), fav1] = True
    fav[np.arange(n), fav2] = True

    # --- customers ----------------------------------------------------------------------------
    first = rng.integers(0, len(FIRST_NAMES), n)
    last = rng.integers(0, len(LAST_NAMES), n)
    first_a, last_a = pa.array(FIRST_NAMES).take(pa.array(first)), pa.array(LAST_NAMES).take(pa.array(last))
    phone_width = max(8, len(str(cfg.customers)))
    phone_digits = pc.utf8_lpad(
        pc.cast(pa.array((plan.phone_a * gidx + plan.phone_b) % 10**phone_width), pa.string()),
        width=phone_width,
        padding="0",
    )
    phone = pc.binary_join_element_wise(
        "+1-555-",
        pc.utf8_slice_codeunits(phone_digits, 0, phone_width - 4),
        "-",
        pc.utf8_slice_codeunits(phone_digits, phone_width - 4, phone_width),
        "",
    )
    email = pc.binary_join_element_wise(
        pc.utf8_lower(first_a), ".", pc.utf8_lower(last_a), ".", pc.cast(pa.array(gidx + 1), pa.string()),
        "@example.com", "",
    )  # fmt: skip
    age = np.rint(rng.normal(AGE_MEAN[seg], AGE_SD)).clip(18, 80).astype(np.int64)
    customers = pa.table(
        {
            "customer_id": cust_ids,
            "consent": pa.array(rng.random(n) < CONSENT_P),
            "age": pa.array(age),
            "gender": pa.array(GENDERS).take(pa.array(rng.choice(len(GENDERS), n, p=GENDER_P))),
            "region": pa.array(REGIONS).take(pa.array(rng.choice(len(REGIONS), n, p=REGION_P))),
            "signup_date": _timestamps(signup),
            "name": pc.binary_join_element_wise(first_a, last_a, " "),
            "phone": phone,
            "email": email,
        }
    )

    # --- transactions -------------------------------------------------------------------------
    n_tx = rng.poisson(expected)
    tc = np.repeat(np.arange(n), n_tx)
    ts = _uniform_after(rng, active_from[tc], plan.end)
    order = np.lexsort((ts, tc))
    tc, ts = tc[order], ts[order]
    m = tc.size
    seg_t = seg[tc]
    amount = np.round(rng.lognormal(np.log(AMOUNT_MEAN[seg_t]) - AMOUNT_SIGMA**2 / 2, AMOUNT_SIGMA), 2)
    quantity = 1 + rng.poisson(QUANTITY_EXTRA_MEAN, m)
    in_fav = rng.random(m) < FAVOURITE_SHARE
    pick2 = rng.random(m) < 0.5
    fav_cat = np.where(pick2, fav2[tc], fav1[tc])
    category = np.where(in_fav, fav_cat, rng.integers(0, len(CATEGORIES), m))
    channel = rng.choice(len(TX_CHANNELS), m, p=TX_CHANNEL_P)
    transactions = pa.table(
        {
            "transaction_id": _ids("T", offsets["transactions"] + np.arange(1, m + 1), 10),
            "customer_id": cust_ids.take(pa.array(tc)),
            "timestamp": _timestamps(ts),
            "amount": pa.array(amount, pa.float64()),
            "quantity": pa.array(quantity.astype(np.int64)),
            "category": pa.array(CATEGORIES).take(pa.array(category)),
            "channel": pa.array(TX_CHANNELS).take(pa.array(channel)),
        }
    )
    offsets["transactions"] += m

    # --- interactions -------------------------------------------------------------------------
    n_int = np.minimum(rng.poisson(INTERACTIONS_BASE + INTERACTIONS_PER_PURCHASE * expected), INTERACTIONS_CAP)
    ic = np.repeat(np.arange(n), n_int)
    weights = plan.category_mass[None, :] * np.where(fav, FAVOURITE_BOOST, 1.0)
    cum = np.cumsum(weights, axis=1)
    cum /= cum[:, -1:]
    cum[:, -1] = 1.0
    u = rng.random(ic.size)
    cat = (cum[ic] <= u[:, None]).sum(axis=1)
    pos = np.searchsorted(plan.item_cat_sorted_cdf, cat + rng.random(ic.size), side="right")
    item = plan.item_order[np.minimum(pos, plan.item_order.size - 1)]
    its = _uniform_after(rng, active_from[ic], plan.end)
    liked = fav[ic, plan.item_cat[item]]
    rating = np.rint(rng.normal(np.where(liked, 4.0, 3.0), 0.9)).clip(1, 5)
    order = np.lexsort((its, item, ic))
    ic, item, its, rating = ic[order], item[order], its[order], rating[order]
    keep = np.ones(ic.size, dtype=bool)
    keep[1:] = (np.diff(ic) != 0) | (np.diff(item) != 0) | (np.diff(its) != 0)
    ic, item, its, rating = ic[keep], item[keep], its[keep], rating[keep]
    order = np.lexsort((item, its, ic))
    ic, item, its, rating = ic[order], item[order], its[order], rating[order]
    interactions = pa.table(
        {
            "customer_id": cust_ids.take(pa.array(ic)),
            "item_id": plan.items.column("item_id").take(pa.array(item)),
            "timestamp": _timestamps(its),
            "rating": pa.array(rating, pa.float64()),
        }
    )

    # --- funnel events ------------------------------------------------------------------------
    parts: list[tuple[np.ndarray, ...]] = []  # (customer, campaign, stage, channel, arm, ts, creative)
    crng = np.random.default_rng([cfg.seed, _STREAM_CREATIVES, b])  # own stream: other draws stay as they were
    rfm = sc.rfm_segments(n, tc, ts, plan.end) if cfg.creatives else np.zeros(n, dtype=np.int64)
    for ci, camp in enumerate(plan.campaigns):
        exposed = (signup < camp.start) & (rng.random(n) < EXPOSURE_P)
        ch = rng.choice(len(CAMPAIGN_CHANNELS), n, p=CAMPAIGN_CHANNEL_P)
        arm_b = rng.random(n) < 0.5
        rates = plan.step_rates[ch, seg]  # (n, 3)
        creative = sc.draw(crng, n)
        if cfg.creatives:
            rates[:, 0] = rates[:, 0] * sc.click_multiplier(creative, rfm)
        rates[:, 2] = np.minimum(rates[:, 2] * np.where(arm_b, camp.lift, 1.0), 1.0)
        days = max(1, (camp.end - camp.start) // _DAY)
        first_day = camp.start // _DAY
        day = first_day + rng.integers(0, days, n)
        t = day * _DAY + _golden_hours(rng, seg) * 3600 + rng.integers(0, 3600, n)
        t = np.clip(t, camp.start, camp.end)
        reached = exposed
        for stage in range(len(FUNNEL_STAGES)):
            if stage > 0:
                reached = reached & (rng.random(n) < rates[:, stage - 1])
                nd = (t // _DAY) + rng.choice(3, n, p=NEXT_STAGE_DAY_P)
                cand = nd * _DAY + _golden_hours(rng, seg) * 3600 + rng.integers(0, 3600, n)
                cand = np.where(cand <= t, cand + _DAY, cand)
                t = np.minimum(cand, plan.end)
            idx = np.flatnonzero(reached)
            parts.append((idx, np.full(idx.size, ci), np.full(idx.size, stage), ch[idx], arm_b[idx], t[idx],
                          creative[idx]))
    if parts:
        ec, ecamp, estage, ech, earm, ets, ecr = (np.concatenate(col) for col in zip(*parts, strict=True))
    else:
        ec = ecamp = estage = ech = ets = ecr = np.zeros(0, dtype=np.int64)
        earm = np.zeros(0, dtype=bool)
    order = np.lexsort((estage, ecamp, ec))
    ec, ecamp, estage, ech, earm, ets, ecr = (a[order] for a in (ec, ecamp, estage, ech, earm, ets, ecr))
    events = pa.table(
        {
            "event_id": _ids("E", offsets["events"] + np.arange(1, ec.size + 1), 10),
            "customer_id": cust_ids.take(pa.array(ec, pa.int64())),
            "timestamp": _timestamps(ets),
            "campaign": pa.array([c.name for c in plan.campaigns], pa.string()).take(pa.array(ecamp, pa.int64())),
            "channel": pa.array(CAMPAIGN_CHANNELS).take(pa.array(ech, pa.int64())),
            "stage": pa.array(FUNNEL_STAGES).take(pa.array(estage, pa.int64())),
            "arm": pa.array(["A", "B"]).take(pa.array(earm.astype(np.int64))),
            **({"creative": pa.array(sc.CREATIVES).take(pa.array(ecr, pa.int64()))} if cfg.creatives else {}),
        }
    )
    offsets["events"] += ec.size
    offer_truth: dict[str, Any] = {}
    if cfg.offers:
        events, ec, offer_truth = _offer_rows(plan, b, seg, lam, signup, cust_ids, events, ec, offsets,
                                              su.history(n, tc, ts, amount, plan.cutoff))

    truth = pa.table(
        {
            "customer_id": cust_ids,
            "partner_id": pa.array(plan.partner_names).take(pa.array(partner)),
            "segment": pa.array(SEGMENTS).take(pa.array(seg)),
            "purchase_rate_per_year": pa.array(lam),
            "expected_purchases_in_window": pa.array(expected),
            "p_buy_after_cutoff": pa.array(p_after_cutoff),
            "favourite_categories": pc.if_else(
                pa.array(has2),
                pc.binary_join_element_wise(
                    pa.array(CATEGORIES).take(pa.array(fav1)), pa.array(CATEGORIES).take(pa.array(fav2)), "|"
                ),
                pa.array(CATEGORIES).take(pa.array(fav1)),
            ),
            "golden_hour": pa.array(GOLDEN_HOURS[seg].astype(np.int64)),
            **{k: pa.array(v) for k, v in offer_truth.items()},
        }
    )
    return Block(
        tables={
            "customers": (customers, partner),
            "transactions": (transactions, partner[tc]),
            "interactions": (interactions, partner[ic]),
            "events": (events, partner[ec]),
        },
        truth=truth,
    )


def _offer_rows(plan: Plan, b: int, seg: np.ndarray, lam: np.ndarray, signup: np.ndarray, cust_ids: pa.Array,
                events: pa.Table, ec: np.ndarray, offsets: dict[str, int],
                history: tuple[np.ndarray, np.ndarray]) -> tuple[pa.Table, np.ndarray, dict]:
    """The block's events with the planted ``offers`` campaign appended (own random stream), and its truth."""
    rng = np.random.default_rng([plan.config.seed, _STREAM_OFFERS, b])
    o = su.offer_block(rng, lam, AMOUNT_MEAN[seg], signup, plan.cutoff, plan.end, _golden_hours(rng, seg), *history)
    rows = pa.table({
        "event_id": _ids("E", offsets["events"] + np.arange(1, o.customer.size + 1), 10),
        "customer_id": cust_ids.take(pa.array(o.customer, pa.int64())), "timestamp": _timestamps(o.time),
        "campaign": pa.array([su.OFFERS_CAMPAIGN] * o.customer.size, pa.string()),
        "channel": pa.array([su.OFFER_CHANNEL] * o.customer.size, pa.string()),
        "stage": pa.array(FUNNEL_STAGES).take(pa.array(o.stage, pa.int64())),
        "arm": pa.array(su.ARMS).take(pa.array(o.arm, pa.int64())),
        **({"creative": pa.nulls(o.customer.size, pa.string())} if "creative" in events.column_names else {}),
    })
    offsets["events"] += o.customer.size
    return pa.concat_tables([events, rows.cast(events.schema)]), np.concatenate([ec, o.customer]), o.truth

"""The budget planner: before any budget is spent, what a spec's answers will look like on this federation.

Why: at 3,300 customers over two partners and epsilon 1 across the whole catalogue almost every answer comes
back suppressed -- and nothing said so before the budget was gone. Most of what decides that is known before
any partner computes:

- **noise sd and 95 % interval width** of every cell: exact. They depend only on the budget split, the
  declared contribution bounds and the number of partners (each adds its own noise; with distributed noise,
  the SecAgg+ encoding's share split), not on any data;
- **the chance a cell is suppressed**: ``P(count + noise < min_group_size + margin x sd)``, for an *expected*
  count. Expected counts come from the federation's sizes -- declared in the spec's ``[federation]`` table, or
  measured with a charged noisy count (``fedinsight insights plan --count``) -- spread **evenly** over each
  dimension's keys (a stated model: real cells are uneven, so a planner's "12 % suppressed" is a forecast, not
  a promise). Cells that are empty by construction (``other`` when every key is declared) count as suppressed.

From these it proposes a budget split (towards equal relative error at the typical cell: weight ∝ (noise sd per
unit weight / typical count)², moved at most 4x from the spec's own weights), and when most answers would be
suppressed it says how many customers, or how much epsilon, would bring that below half. A spec run refuses
then, before anything is charged, unless the user says ``--yes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from fedinsight.core.errors import ConfigError
from fedinsight.federation.task import Preview
from fedinsight.privacy.allocation import QueryNoise, split_budget
from fedinsight.privacy.intervals import noise_z95
from fedinsight.tasks.insights import discovery, server
from fedinsight.tasks.insights.aggregates import OTHER, LocalAggregate
from fedinsight.tasks.insights.catalogue import InsightBatch
from fedinsight.tasks.insights.customer_features import DERIVED_GROUPS
from fedinsight.tasks.insights.distributed import InsightsEncoding, blocks_of, shares_of
from fedinsight.tasks.insights.options import VALIDATION_DATE
from fedinsight.tasks.insights.spec import VOCABULARIES, InsightSpec, Sizes, SpecJob

MOSTLY_SUPPRESSED = 0.5
"""A plan whose expected share of suppressed answers is above this is refused without ``--yes``."""

SUPPRESSION_MEASURES: dict[str, tuple[str, ...]] = {
    "segment_profile": ("customers",),
    "ltv_tiers": ("customers", "customers_prev"),
    "funnel": ("customers",),
    "ab_test": ("exposed", "converted"),
    "golden_hours": ("customers_by_hour", "customers_by_weekday", "customers_by_slot"),
    "channel_response": ("exposed", "responded"),
    "channel_creative": ("exposed", "responded"),
    "group_by": ("customers",),
}
"""The customer counts each kind of insight is suppressed on (what the planner forecasts)."""

STAGE_SIZES = ("exposed", "clicked", "participated", "converted")
ASSUMED_RATES = {"purchasers": 0.5, "exposed": 0.7, "clicked": 0.1, "participated": 0.5, "converted": 0.3}
"""Typical shares the planner assumes for a size the spec does not declare (of the broader size before it:
purchasers and exposed of customers, clicked of exposed ...). Rough on purpose; ``[federation]`` or ``--count``
replaces them."""


@dataclass(frozen=True)
class Populations:
    """How many customers each part of an insight is about (over all partners), with where the figure came from."""

    customers: float | None
    purchasers: float | None
    stages: tuple[float | None, float | None, float | None, float | None]  # exposed, clicked, participated, converted
    source: str  # "declared in the spec", "noisy count (charged)", "unknown"
    assumed: tuple[str, ...] = ()  # sizes filled from a broader one

    @classmethod
    def of(cls, sizes: Sizes, source: str) -> Populations:
        """Sizes as given; a size not given is the broader one times a typical rate (:data:`ASSUMED_RATES`), said so
        in ``assumed`` -- a forecast from customers alone is rough, declare the rest or measure it."""
        customers = sizes.customers
        assumed = []

        def fill(name: str, value: float | None, base: float | None, base_name: str) -> float | None:
            if value is not None or base is None:
                return value
            rate = ASSUMED_RATES[name]
            assumed.append(f"{name} = {rate:g} x {base_name}")
            return base * rate

        purchasers = fill("purchasers", sizes.purchasers, customers, "customers")
        stages: list[float | None] = []
        broader, broader_name = customers, "customers"
        for name in STAGE_SIZES:
            value = fill(name, getattr(sizes, name), broader, broader_name)
            stages.append(value)
            broader, broader_name = value, name
        return cls(None if customers is None else float(customers), None if purchasers is None else float(purchasers),
                   tuple(None if s is None else float(s) for s in stages),  # type: ignore[arg-type]
                   source if customers is not None else "unknown", tuple(assumed))

    def scaled(self, factor: float) -> Populations:
        def s(x: float | None) -> float | None:
            return None if x is None else x * factor

        return Populations(s(self.customers), s(self.purchasers), tuple(s(x) for x in self.stages),  # type: ignore[arg-type]
                           self.source, self.assumed)

    @property
    def known(self) -> bool:
        return self.customers is not None


@dataclass
class CellClass:
    """Cells of one insight that share a noise level and an expected count (a measure, a funnel stage ...)."""

    insight: str
    label: str
    cells: int
    noise_sd: float
    ci95_width: float
    expected: float | None  # customers per cell (the evenly spread model), None: sizes unknown
    p_suppressed: float | None
    needed: float  # customers a cell needs to be shown with 95 % probability


@dataclass
class InsightForecast:
    name: str
    kind: str
    title: str
    epsilon: float
    weight: float
    classes: list[CellClass]
    typical: float | None = None  # the median over its cell classes of their mean non-empty expected count
    unit_sd: float = 0.0  # a count cell's noise sd at weight 1 of the split

    @property
    def cells(self) -> int:
        return sum(c.cells for c in self.classes)

    @property
    def suppressed_share(self) -> float | None:
        if any(c.p_suppressed is None for c in self.classes) or not self.cells:
            return None
        return sum(c.cells * c.p_suppressed for c in self.classes) / self.cells  # type: ignore[operator]


@dataclass
class SpecPlan:
    """What a spec will cost and show on a federation of ``partners`` (see the module docstring)."""

    partners: int
    epsilon: float
    delta: float
    mechanism: str
    min_group_size: int
    margin_sd: float
    populations: Populations
    insights: list[InsightForecast]
    discovery: dict[str, Any] | None
    split: dict[str, float]  # proposed weights by insight name
    keys: dict[str, str] = field(default_factory=dict)  # vocabulary -> where its keys come from
    needed_customers: float | None = None
    needed_epsilon: float | None = None
    notes: list[str] = field(default_factory=list)
    noise_model: str = "local"

    @property
    def suppressed_share(self) -> float | None:
        shares = [i.suppressed_share for i in self.insights]
        if not shares or any(s is None for s in shares):
            return None
        return float(np.mean(shares))  # type: ignore[arg-type]

    @property
    def mostly_suppressed(self) -> bool:
        share = self.suppressed_share
        return share is not None and share > MOSTLY_SUPPRESSED

    def warning(self) -> str | None:
        """The plan's warning in words, or None."""
        share = self.suppressed_share
        if share is None or share <= MOSTLY_SUPPRESSED:
            return None
        parts = [f"most answers would be suppressed: about {share:.0%} of the cells (averaged over the "
                 f"{len(self.insights)} insights) would hold fewer than {self.min_group_size} customers after noise"]
        if self.needed_customers is not None:
            parts.append(f"about {self.needed_customers:,.0f} customers over all partners "
                         f"(now {self.populations.customers:,.0f}) would bring that below half")
        else:
            parts.append("no federation size brings that below half (too many cells are empty by construction: "
                         "ask for fewer or coarser insights)")
        if self.needed_epsilon is not None:
            parts.append(f"or epsilon {self.needed_epsilon:.3g} (now {self.epsilon:g}) at today's size")
        else:
            parts.append(f"no epsilon up to 100 is enough at today's size: the cells are smaller than the minimum "
                         f"group size of {self.min_group_size} even without noise")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "partners": self.partners, "epsilon": self.epsilon, "delta": self.delta, "mechanism": self.mechanism,
            "noise_model": self.noise_model,
            "min_group_size": self.min_group_size, "suppression_margin_sd": self.margin_sd,
            "sizes": {"source": self.populations.source, "customers": self.populations.customers,
                      "purchasers": self.populations.purchasers,
                      **dict(zip(STAGE_SIZES, self.populations.stages, strict=True)),
                      "assumed": list(self.populations.assumed)},
            "keys": self.keys,
            "insights": [{"name": i.name, "kind": i.kind, "epsilon": i.epsilon, "weight": i.weight,
                          "cells": i.cells, "suppressed_share": i.suppressed_share,
                          "classes": [c.__dict__ for c in i.classes]} for i in self.insights],
            "discovery": self.discovery, "suppressed_share": self.suppressed_share,
            "mostly_suppressed": self.mostly_suppressed, "needed_customers": self.needed_customers,
            "needed_epsilon": self.needed_epsilon, "proposed_split": self.split, "warning": self.warning(),
            "notes": self.notes,
        }


# --- the expected count of every cell ---------------------------------------------------------------

def _even(total: float | None, keys: tuple[str, ...], declared_other: bool) -> np.ndarray | None:
    """``total`` spread evenly over ``keys``; ``other`` gets nothing when it is the leftover of declared keys."""
    if total is None:
        return None
    real = [k for k in keys if not (declared_other and k == OTHER)]
    out = np.array([0.0 if (declared_other and k == OTHER) else total / max(len(real), 1) for k in keys])
    return out


def expected_counts(kind: str, query: dict[str, Any], measure: str, dims: tuple[tuple[str, tuple[str, ...]], ...],
                    pop: Populations) -> np.ndarray | None:
    """Expected customers per cell of one count measure, evenly spread (``None`` when the sizes are unknown)."""
    shape = tuple(len(k) for _, k in dims)
    exposed, clicked, _, converted = pop.stages

    def grid(first: np.ndarray | None, second: np.ndarray | None) -> np.ndarray | None:
        if first is None or second is None:
            return None
        return np.outer(first, second)

    def shares(keys: tuple[str, ...]) -> np.ndarray:
        return _even(1.0, keys, OTHER in keys)  # type: ignore[return-value]

    if kind in ("segment_profile", "ltv_tiers"):
        return _even(pop.customers, dims[0][1], False)
    if kind == "funnel":
        groups, stages = dims[0][1], dims[1][1]
        per_stage = np.array([s if s is not None else np.nan for s in pop.stages])[: len(stages)]
        if np.isnan(per_stage).any():
            return None
        return np.outer(shares(groups), per_stage)
    if kind == "ab_test":
        total = exposed if measure == "exposed" else converted
        return None if total is None else np.full(shape, total / max(int(np.prod(shape)), 1))
    if kind == "golden_hours":
        groups, cells = dims[0][1], dims[1][1]
        return grid(_even(clicked, groups, OTHER in groups), np.full(len(cells), 1.0 / len(cells)))
    if kind == "channel_response":
        groups, channels = dims[0][1], dims[1][1]
        total = exposed if measure == "exposed" else clicked
        return grid(_even(total, groups, False), shares(channels))
    if kind == "channel_creative":
        groups, channels, creatives = dims[0][1], dims[1][1], dims[2][1]
        total = exposed if measure == "exposed" else clicked
        per_group = grid(_even(total, groups, False), shares(channels))
        return None if per_group is None else np.multiply.outer(per_group, shares(creatives))
    if kind == "group_by":
        table = query.get("table")
        total = pop.customers if table == "customers" else pop.purchasers if table == "transactions" else exposed
        if total is None:
            return None
        out = np.full(shape, float(total))
        for axis, (name, keys) in enumerate(dims):
            declared = name not in DERIVED_GROUPS and OTHER in keys
            s = _even(1.0, keys, declared)
            out = out * s.reshape([-1 if i == axis else 1 for i in range(len(dims))])  # type: ignore[union-attr]
        return out
    raise ConfigError(f"no planner model for insight kind '{kind}'")


def _p_below(expected: np.ndarray, sd: float, bar: np.ndarray | float) -> np.ndarray:
    """P(expected + noise < bar), noise ~ N(0, sd²) (the sum of several partners' noises is close to normal)."""
    return stats.norm.cdf((np.asarray(bar, dtype=float) - expected) / sd) if sd > 0 else (expected < bar).astype(float)


def _class_label(kind: str, measure: str, dims: tuple[tuple[str, tuple[str, ...]], ...], index: int | None) -> str:
    words = {"customers": "customers", "customers_prev": "customers, the window before", "exposed": "exposed",
             "converted": "converted", "responded": "responded", "customers_by_hour": "by hour",
             "customers_by_weekday": "by weekday", "customers_by_slot": "by weekday x hour"}
    base = words.get(measure, measure)
    groups = dims[0]
    text = f"{base} per {groups[0].replace('_', ' ')} ({len(groups[1])})"
    if kind == "funnel" and index is not None:
        text = f"{dims[1][1][index]} per {groups[0].replace('_', ' ')} ({len(groups[1])})"
    elif kind == "channel_creative":
        text = f"{base} per {groups[0].replace('_', ' ')} x channel x creative " \
               f"({' x '.join(str(len(k)) for _, k in dims)})"
    elif kind in ("ab_test",):
        text = f"{base} per campaign x arm ({len(dims[0][1])} x {len(dims[1][1])})"
    elif kind == "group_by":
        text = f"{base} per {' x '.join(d for d, _ in dims)} ({' x '.join(str(len(k)) for _, k in dims)})"
    return text


def forecast(batch: InsightBatch, noises: dict[str, QueryNoise], layouts: dict[str, LocalAggregate], partners: int,
             pop: Populations, distributed: tuple[int, int] | None = None) -> list[InsightForecast]:
    """Each insight's cells: noise, interval, expected count and chance of suppression. ``distributed``: (noise
    shares, max customers) of a ``distributed-secagg`` job, whose sum carries one share-split noise instead of
    every partner's full noise (:mod:`.distributed`)."""
    z = noise_z95(batch.mechanism, partners)
    enc = None
    if distributed is not None:
        names = [q.name for q in batch.queries]
        enc = InsightsEncoding.for_batch(
            blocks_of(names, {n: layouts[n].vector().size for n in names}, {n: noises[n].multiplier for n in names},
                      {n: layouts[n].l2 for n in names}), partners=partners, shares=distributed[0],
            max_customers=distributed[1])
    out = []
    for q in batch.queries:
        noise, agg = noises[q.name], layouts[q.name]
        per_partner = (math.sqrt(2) * noise.multiplier * agg.l1 if noise.mechanism == "laplace"
                       else noise.multiplier * agg.l2)
        sd = enc.sum_noise_sd(q.name) if enc is not None else per_partner * math.sqrt(partners)
        bar = batch.min_group_size + batch.suppression_margin_sd * sd
        needed = bar + 1.6448536269514722 * sd
        classes: list[CellClass] = []
        typical: list[float] = []
        query = q.model_dump(mode="json")
        for m in agg.measures:
            if m.name not in SUPPRESSION_MEASURES[q.kind]:  # type: ignore[attr-defined]
                continue
            expected = expected_counts(q.kind, query, m.name, m.dims, pop)  # type: ignore[attr-defined]
            splits = range(len(m.dims[1][1])) if q.kind == "funnel" else [None]  # type: ignore[attr-defined]
            for j in splits:
                exp = None if expected is None else (expected[:, j] if j is not None else np.ravel(expected))
                n_cells = int(np.prod([len(k) for _, k in m.dims])) // (len(m.dims[1][1]) if j is not None else 1)
                # a funnel stage is released in units of its scale (aggregates.STAGE_WEIGHTS): its own noise sd
                sd_j = sd if j is None else sd * float(np.broadcast_to(m.scale, (len(m.dims[1][1]),))[j])
                p = None if exp is None else float(np.mean(_p_below(exp, sd_j, bar)))
                nonzero = None if exp is None else [float(x) for x in exp if x > 0]
                if nonzero:
                    typical.append(float(np.mean(nonzero)))
                classes.append(CellClass(
                    q.name, _class_label(q.kind, m.name, m.dims, j), n_cells, sd_j, 2 * z * sd_j,  # type: ignore[attr-defined]
                    None if nonzero is None else (float(np.mean(nonzero)) if nonzero else 0.0), p, needed))
        out.append(InsightForecast(q.name, q.kind, q.title or q.name, noise.epsilon(batch.delta), q.weight,  # type: ignore[attr-defined]
                                   classes, float(np.median(typical)) if typical else None,
                                   sd * (q.weight if noise.mechanism == "laplace" else math.sqrt(q.weight))))
    return out


MAX_SHIFT = 4.0
"""The proposed split moves an insight's weight at most this factor from the spec's own."""


def propose_split(insights: list[InsightForecast], mechanism: str) -> dict[str, float]:
    """Weights moving every insight towards the same relative error at its typical cell (sd / count).

    Gaussian: an insight's noise sd falls with the square root of its weight, so weight ∝ (sd at weight 1 /
    typical count)²; Laplace: with the weight itself, so weight ∝ sd at weight 1 / typical count. Without sizes,
    the same absolute sd for every insight. Each weight stays within ``MAX_SHIFT`` of the spec's own: cells of a
    weekday x hour heatmap are tens of times smaller than a segment's, and equal relative error would starve
    every other insight to serve them."""
    if not insights:
        return {}
    raw = {}
    for i in insights:
        scale = i.unit_sd / i.typical if i.typical else i.unit_sd
        raw[i.name] = scale if mechanism == "laplace" else scale**2
    now = {i.name: i.weight for i in insights}
    ratio = {n: raw[n] / now[n] for n in raw}
    centre = float(np.exp(np.mean(np.log([max(r, 1e-300) for r in ratio.values()]))))
    moved = {n: now[n] * min(MAX_SHIFT, max(1 / MAX_SHIFT, ratio[n] / centre)) for n in raw}
    total = sum(moved.values())
    return {n: float(f"{w / total * sum(now.values()):.2g}") for n, w in moved.items()}


# --- the whole plan ------------------------------------------------------------------------------------

def plan_job(job: SpecJob, partners: int, *, sizes: Sizes | None = None, source: str = "declared in the spec",
             only: list[str] | None = None, search: bool = True,
             distributed: tuple[int, int] | None = None) -> SpecPlan:
    """The plan of ``job`` on ``partners`` partners; ``sizes`` override the spec's ``[federation]`` (a census);
    ``distributed``: (noise shares, max customers) when the job runs with ``noise-model = distributed-secagg``."""
    spec: InsightSpec = job.spec
    if partners < 1:
        raise ConfigError("the planner needs the number of partners")
    expect = {v: [f"{v}-{i + 1}" for i in range(spec.discovery.expect_keys)] for v in job.discover}
    batch, _ = job.batch(expect, only=only)
    kept = [q.name for q in batch.queries]
    vocabs = [v for v in job.discover if any(n.vocabulary == v and n.query in kept for n in job.needs)]
    pop = Populations.of(sizes or spec.federation, source if sizes is not None else "declared in the spec")

    def build(eps: float, population: Populations) -> tuple[list[InsightForecast], dict[str, QueryNoise]]:
        b = batch.model_copy(update={"epsilon": eps})
        noises = server.price_batch(b, extra={discovery.NAME: spec.discovery.weight} if vocabs else None)
        return forecast(b, noises, server.layout_of(b), partners, population, distributed), noises

    insights, noises = build(batch.epsilon, pop)
    disc = None
    if vocabs:
        wire = discovery.wire_of(job, vocabs, noises[discovery.NAME], min_group_size=batch.min_group_size,
                                 delta=batch.delta)
        k = discovery.keys_per_customer(vocabs, spec.discovery.max_keys_per_customer)
        n = noises[discovery.NAME]
        sd = (math.sqrt(2) * n.multiplier * k) if n.mechanism == "laplace" else n.multiplier * math.sqrt(k)
        disc = {"dimensions": vocabs, "epsilon": n.epsilon(batch.delta), "noise_sd_per_partner": sd,
                "threshold": wire["threshold"], "delta": wire["max_delta"], "max_keys": spec.discovery.max_keys,
                "assumed_keys": spec.discovery.expect_keys}
    plan = SpecPlan(partners, batch.epsilon, batch.delta, batch.mechanism, batch.min_group_size,
                    batch.suppression_margin_sd, pop, insights, disc, propose_split(insights, batch.mechanism),
                    keys={v: job.sources[v] for v in VOCABULARIES
                          if any(nd.vocabulary == v and nd.query in kept for nd in job.needs)},
                    noise_model="local" if distributed is None else "distributed-secagg")
    if not pop.known:
        plan.notes.append("sizes unknown: the chance of suppression needs the federation's size -- declare "
                          "[federation] customers = N in the spec, or measure it with `fedinsight insights plan "
                          "--count` (a charged noisy count)")
    elif pop.assumed:
        plan.notes.append("assumed " + ", ".join(pop.assumed) + " (declare them in [federation], or --count, for a "
                          "sharper forecast)")
    if vocabs:
        plan.notes.append(f"discovered dimensions ({', '.join(vocabs)}) are planned with "
                          f"{spec.discovery.expect_keys} keys each ([discovery] expect_keys)")
    if search and plan.mostly_suppressed:
        plan.needed_customers = _needed_customers(lambda p: build(batch.epsilon, p)[0], pop)
        plan.needed_epsilon = _needed_epsilon(lambda e: build(e, pop)[0], batch.epsilon)
    return plan


def _share(insights: list[InsightForecast]) -> float:
    return float(np.mean([i.suppressed_share for i in insights]))  # type: ignore[arg-type]


def _needed_customers(build: Any, pop: Populations) -> float | None:
    lo, hi = 1.0, 2.0
    while _share(build(pop.scaled(hi))) > MOSTLY_SUPPRESSED:
        lo, hi = hi, hi * 2
        if hi > 1e5:
            return None
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if _share(build(pop.scaled(mid))) > MOSTLY_SUPPRESSED else (lo, mid)
    return float(pop.customers or 0) * hi


def _needed_epsilon(build: Any, epsilon: float) -> float | None:
    if _share(build(100.0)) > MOSTLY_SUPPRESSED:
        return None
    lo, hi = epsilon, 100.0
    for _ in range(20):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if _share(build(mid)) > MOSTLY_SUPPRESSED else (lo, mid)
    return hi


# --- a charged noisy count of the federation's sizes ---------------------------------------------------

CENSUS_CUSTOMERS, CENSUS_STAGES = "census-customers", "census-stages"


def census_spec(spec: InsightSpec, epsilon: float) -> str:
    """The spec of a noisy count of the sizes the planner needs: customers per lifecycle stage (so: customers,
    purchasers) and customers at each funnel stage, in ``spec``'s window. An ordinary insights job, charged."""
    from fedinsight.tasks.insights.spec import canonical, parse_spec

    return canonical(parse_spec({
        "epsilon": epsilon, "window": spec.window.model_dump(exclude_none=True), "features": spec.features,
        "insight": [{"name": CENSUS_CUSTOMERS, "kind": "segment_profile", "by": "lifecycle_stage",
                     "title": "Federation size: customers per lifecycle stage"},
                    {"name": CENSUS_STAGES, "kind": "funnel", "by": "all",
                     "title": "Federation size: customers at each funnel stage"}]}))


def sizes_from_census(insights: list[dict[str, Any]]) -> Sizes:
    """The sizes a census job released (a suppressed group counts as empty: fewer than the minimum anyway)."""
    def value(node: Any) -> float:
        return float(node["value"]) if isinstance(node, dict) and "value" in node else 0.0

    by_name = {i["name"]: i for i in insights}
    groups = by_name[CENSUS_CUSTOMERS]["result"]["groups"]
    per_stage = {g["lifecycle_stage"]: value(g.get("customers")) for g in groups}
    customers = sum(per_stage.values())
    purchasers = per_stage.get("purchased", 0.0) + per_stage.get("loyal", 0.0)
    funnel = by_name[CENSUS_STAGES]["result"]["groups"][0]["customers"] if CENSUS_STAGES in by_name else {}
    stages = [max(0.0, value(funnel.get(s))) for s in ("exposure", "click", "participate", "convert")]
    return Sizes(customers=round(max(customers, 0.0)), purchasers=round(max(purchasers, 0.0)),
                 exposed=round(stages[0]), clicked=round(stages[1]), participated=round(stages[2]),
                 converted=round(stages[3]))


def _num(value: float | None, digits: int = 0) -> str:
    return "?" if value is None else f"{value:,.{digits}f}"


def preview_of(plan: SpecPlan) -> Preview:
    """The plan as a table a marketer reads: per insight and kind of cell, the noise, the interval, the expected
    customers and the chance of being hidden."""
    rows = []
    for ins in plan.insights:
        share = ins.suppressed_share
        head = f"{ins.name} (ε {ins.epsilon:.2g}" + ("" if share is None else f", {share:.0%} hidden") + ")"
        for n, c in enumerate(ins.classes):
            rows.append([head if n == 0 else "", c.label, str(c.cells), f"{c.noise_sd:,.1f}",
                         f"± {c.ci95_width / 2:,.0f}", _num(c.expected),
                         "?" if c.p_suppressed is None else f"{c.p_suppressed:.0%}", f"{c.needed:,.0f}"])
    sizes = plan.populations
    notes = ["noise sd and 95 % ± are in customers; 'customers per cell' spreads the federation's size evenly over "
             "the keys; 'needed': customers a cell needs to be shown 95 % of the time"]
    notes += [f"{plan.partners} partners, epsilon {plan.epsilon:g} (delta {plan.delta:g}, {plan.mechanism}, "
             f"{plan.noise_model} noise), groups "
             f"under {plan.min_group_size} customers (noisy) are suppressed; sizes: "
             + (f"{sizes.customers:,.0f} customers ({sizes.source})" if sizes.known else "unknown")]
    if plan.keys:
        notes.append("keys: " + ", ".join(f"{v} {s}" for v, s in plan.keys.items()))
    if plan.discovery:
        d = plan.discovery
        notes.append(f"key discovery of {', '.join(d['dimensions'])}: epsilon {d['epsilon']:.3g}, noise sd "
                     f"{d['noise_sd_per_partner']:.1f} per partner; a key is found if at least about "
                     f"{d['threshold']:,.0f} customers of one partner have it (delta {d['delta']:.2g})")
    share = plan.suppressed_share
    if share is not None:
        notes.append(f"expected share of suppressed cells, averaged over the insights: {share:.0%}")
    notes += plan.notes
    notes.append("proposed [split] (towards equal relative error): "
                 + ", ".join(f'"{n}" = {w:g}' for n, w in plan.split.items()))
    return Preview(f"Insight plan: {len(plan.insights)} insights on {plan.partners} partners",
                   ["insight", "cells", "n", "noise sd", "95 % ±", "customers per cell", "P(hidden)",
                    "needed"],
                   rows, notes, plan.warning(), plan.as_dict())


def noise_setting(options: Any, partners: int) -> tuple[int, int] | None:
    """(noise shares, max customers) of a distributed-noise job's options, None for local noise."""
    if getattr(options, "noise_model", "local") != "distributed-secagg":
        return None
    return shares_of(partners, options.honest_partners, options.max_dropouts), options.max_customers


def refuse_if_mostly_suppressed(options: Any, partners: int, *, sizes: Sizes | None = None) -> SpecPlan | None:
    """Raise ConfigError (nothing is charged yet) when a spec's plan says most answers would be suppressed."""
    job = options.spec_job(requester="plan", as_of=VALIDATION_DATE)
    plan = plan_job(job, partners, sizes=sizes, only=options.only_names(),
                    distributed=noise_setting(options, partners))
    warning = plan.warning()
    if warning:
        raise ConfigError(f"refused before anything was charged: {warning}. See `fedinsight insights plan`; run "
                          "anyway with --yes (-o yes=true for a job)")
    return plan


__all__ = ["SpecPlan", "plan_job", "preview_of", "refuse_if_mostly_suppressed", "split_budget"]

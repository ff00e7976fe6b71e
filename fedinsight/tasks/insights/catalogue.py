"""The insight catalogue: typed query specs an analyst can ask for, and the default batch per dataset.

Why typed (pydantic): a query is the contract between analyst, coordinator and partners. Everything
that shapes a release is declared here -- group keys, clamp bounds, rows or channels counted per
customer, the reference date -- so the coordinator can price it and partners can bound it without
looking at data. Unknown fields are refused, never ignored.

On the wire a query is ``{"name", "kind", "params"}``; ``params`` are exactly the keyword arguments of
the partner's local computation (:mod:`fedinsight.tasks.insights.aggregates`). Fields that only the
coordinator uses (``title``, ``weight``, ``alpha``) are not sent.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.suppression import DEFAULT_MIN_GROUP_SIZE, MIN_GROUP_FLOOR
from fedinsight.tasks.insights.customer_features import check_zone

CustomerGrouping = Literal["rfm_segment", "lifecycle_stage", "ltv_tier", "all"]
KeyList = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=500)]


def _check_date(name: str, value: str) -> str:
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise ValueError(f"{name} must be a date such as 2026-01-01 (got {value!r})")
    return value


class FeatureRulesSpec(BaseModel):
    """Declared rules for segments, lifecycle stages and LTV tiers (mirrors the partner's FeatureRules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: str = Field(description="Reference date: only rows strictly before it count (e.g. 2026-01-01).")
    window_days: int = Field(365, ge=1)
    champions_max_recency_days: int = Field(30, ge=1)
    champions_min_purchases: int = Field(15, ge=1)
    loyal_max_recency_days: int = Field(90, ge=1)
    loyal_min_purchases: int = Field(8, ge=1)
    potential_max_recency_days: int = Field(90, ge=1)
    at_risk_max_recency_days: int = Field(365, ge=1)
    lifecycle_loyal_min_purchases: int = Field(4, ge=1)
    repurchase_min_purchases: int = Field(2, ge=1)
    ltv_tier_bounds: tuple[float, float, float] = (100.0, 500.0, 2000.0)
    spend_cap: float = Field(5_000.0, gt=0)
    value_cap: float = Field(10_000.0, gt=0)
    require_consent: bool = True
    events_from: str = Field("", description=(
        "Start of the time window: events (exposures, clicks, conversions) before this date are ignored; "
        "empty: every event before as_of counts. Purchases keep the segment rules' own windows."))

    @field_validator("as_of")
    @classmethod
    def _a_date(cls, value: str) -> str:
        return _check_date("as_of", value)

    @field_validator("events_from")
    @classmethod
    def _a_start(cls, value: str) -> str:
        return _check_date("events_from", value) if value else value

    @field_validator("ltv_tier_bounds")
    @classmethod
    def _increasing(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not 0 < value[0] < value[1] < value[2]:
            raise ValueError("ltv_tier_bounds must be three increasing positive numbers")
        return value


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    SERVER_ONLY: ClassVar[frozenset[str]] = frozenset({"name", "kind", "title", "weight", "alpha"})
    needs_events: ClassVar[bool] = False

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")
    title: str = ""
    weight: float = Field(1.0, gt=0, description="Share of the batch's budget, relative to the other queries.")

    def params(self) -> dict[str, Any]:
        """The keyword arguments of the partner's local computation."""
        return self.model_dump(mode="json", exclude=set(self.SERVER_ONLY))

    def wire(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "params": self.params()}  # type: ignore[attr-defined]


class SegmentProfile(_Query):
    """Counts, mean trailing spend and repurchase rate per RFM segment or lifecycle stage."""

    kind: Literal["segment_profile"] = "segment_profile"
    by: Literal["rfm_segment", "lifecycle_stage"] = "rfm_segment"


class LtvTiers(_Query):
    """Share of customers and of value per LTV tier, now and one window earlier (growth)."""

    kind: Literal["ltv_tiers"] = "ltv_tiers"


class Funnel(_Query):
    """Exposure -> click -> participate -> convert customers and step rates, by channel or segment."""

    kind: Literal["funnel"] = "funnel"
    needs_events: ClassVar[bool] = True
    by: Literal["channel", "rfm_segment", "lifecycle_stage", "all"] = "channel"
    channels: list[str] = Field(default_factory=list)
    max_channels_per_customer: int = Field(2, ge=1, le=20)

    @model_validator(mode="after")
    def _channels_declared(self) -> Funnel:
        if self.by == "channel" and not self.channels:
            raise ValueError("a funnel by channel needs the declared list of channels")
        return self


class AbTest(_Query):
    """Conversion per arm of declared campaigns; difference with a CI (sampling + DP noise), decision."""

    kind: Literal["ab_test"] = "ab_test"
    needs_events: ClassVar[bool] = True
    campaigns: KeyList
    arms: tuple[str, str] = ("A", "B")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Significance level (two-sided).")

    @field_validator("alpha")
    @classmethod
    def _only_95(cls, value: float) -> float:
        if abs(value - 0.05) > 1e-12:
            raise ValueError("only alpha = 0.05 (95 % intervals) is supported")
        return value


class GoldenHours(_Query):
    """Customers responding by hour of day, by weekday and (``heatmap``) by weekday x hour slot per group
    (a customer segment, or ``by = "channel"``: the best hour per channel); the peak hour, day and slot.

    Hours are the customer's local time by default (``timezone = "local"``: each partner's own zone, from
    its data view, UTC when it states none), or one IANA zone the analyst names for every partner.

    The heatmap shares the query's epsilon with the two marginals: it adds ``max_slots_per_customer``
    to the L1 bound (and to the squared L2 bound), so every cell of the query gets more noise. Switch it
    off (``heatmap: false``) to release the marginals alone with their smaller noise.
    """

    kind: Literal["golden_hours"] = "golden_hours"
    needs_events: ClassVar[bool] = True
    by: Literal["rfm_segment", "lifecycle_stage", "ltv_tier", "all", "channel"] = "rfm_segment"
    channels: list[str] = Field(default_factory=list, description="Declared channels (only with by = channel).")
    max_channels_per_customer: int = Field(2, ge=1, le=20)
    timezone: str = Field("local", description="'local' (each partner's zone) or an IANA zone name.")
    stages: list[Literal["exposure", "click", "participate", "convert"]] = Field(
        default_factory=lambda: ["click", "participate", "convert"], min_length=1)
    max_hours_per_customer: int = Field(3, ge=1, le=24)
    max_weekdays_per_customer: int = Field(2, ge=1, le=7)
    max_slots_per_customer: int = Field(3, ge=1, le=168, description=(
        "Weekday x hour slots a customer counts in (their earliest distinct ones); only with the heatmap."))
    heatmap: bool = Field(True, description="Also release the joint weekday x hour distribution (168 slots).")

    @field_validator("timezone")
    @classmethod
    def _a_zone(cls, value: str) -> str:
        return check_zone(value)

    @model_validator(mode="after")
    def _channels_declared(self) -> GoldenHours:
        if self.by == "channel" and not self.channels:
            raise ValueError("golden hours by channel need the declared list of channels")
        if self.by != "channel" and self.channels:
            raise ValueError("channels are only used by golden hours by channel")
        return self


class ChannelResponse(_Query):
    """Response rate (clicked or beyond, given exposed) per channel and group; the best channel."""

    kind: Literal["channel_response"] = "channel_response"
    needs_events: ClassVar[bool] = True
    by: CustomerGrouping = "rfm_segment"
    channels: KeyList
    max_channels_per_customer: int = Field(2, ge=1, le=20)


class ChannelCreative(_Query):
    """Response by channel x creative x customer group (a three-way table, small cells suppressed), and the best
    channel-creative pair per group with its interval.

    The creative is a campaign-events column each partner's mapping names (``creative``); a partner without it
    is refused in hello, before anything is charged. Channels and creatives are declared lists (the user's own
    names); a customer counts in at most ``max_pairs_per_customer`` channel-creative pairs (their first by time),
    once in exposed and once in responded per pair: L1 ``2 k``, L2 ``sqrt(2 k)``.
    """

    kind: Literal["channel_creative"] = "channel_creative"
    needs_events: ClassVar[bool] = True
    by: CustomerGrouping = "rfm_segment"
    channels: KeyList
    creatives: KeyList
    max_pairs_per_customer: int = Field(2, ge=1, le=20)


class GroupBy(_Query):
    """Generic DP group-by: customers, count, sum or mean over allow-listed columns with declared bounds."""

    kind: Literal["group_by"] = "group_by"
    table: Literal["customers", "transactions", "events"]
    group_by: Annotated[list[str], Field(min_length=1, max_length=3)]
    keys: dict[str, KeyList] = Field(default_factory=dict)
    value: str | None = None
    aggregates: Annotated[list[Literal["count", "sum", "mean"]], Field(min_length=1)] = Field(
        default_factory=lambda: ["count"])
    bounds: tuple[float, float] | None = None
    max_rows_per_customer: int = Field(10, ge=1, le=1_000)

    @property
    def needs_events(self) -> bool:  # type: ignore[override]
        return self.table == "events"

    @model_validator(mode="after")
    def _bounds_declared(self) -> GroupBy:
        if any(a in ("sum", "mean") for a in self.aggregates):
            if self.value is None or self.bounds is None:
                raise ValueError("sum and mean need a value column and declared bounds [low, high]")
            if not self.bounds[0] < self.bounds[1]:
                raise ValueError("bounds must be [low, high] with low < high")
        return self


QuerySpec = Annotated[
    SegmentProfile | LtvTiers | Funnel | AbTest | GoldenHours | ChannelResponse | ChannelCreative | GroupBy,
    Field(discriminator="kind"),
]


class InsightBatch(BaseModel):
    """A batch of queries priced and released together at one (epsilon, delta)."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str = Field(default_factory=lambda: f"insights-{uuid.uuid4().hex[:12]}")
    features: FeatureRulesSpec
    queries: Annotated[list[QuerySpec], Field(min_length=1)]
    epsilon: float = Field(gt=0, le=100)
    delta: float = Field(1e-6, gt=0, lt=1)
    mechanism: Literal["gaussian", "laplace"] = "gaussian"
    min_group_size: int = Field(DEFAULT_MIN_GROUP_SIZE, ge=MIN_GROUP_FLOOR)
    suppression_margin_sd: float = Field(0.0, ge=0, le=5, description=(
        "Release a group only if its noisy count >= min_group_size + margin x noise sd (0: plain rule; "
        "1.645: 95 % one-sided confidence, stricter hiding but intervals near the bar cover less often)."))
    requester: str = "analyst"

    @model_validator(mode="after")
    def _unique_names(self) -> InsightBatch:
        names = [q.name for q in self.queries]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"query names must be unique (repeated: {', '.join(dupes)})")
        return self

    def wire(self, noise: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """What partners receive: rules, queries with their params and the noise each is released with."""
        return {
            "batch_id": self.batch_id,
            "delta": self.delta,
            "features": self.features.model_dump(mode="json"),
            "queries": [{**q.wire(), "noise": noise[q.name]} for q in self.queries],
        }


def parse_batch(data: str | dict[str, Any]) -> InsightBatch:
    """Validate a batch (JSON text or dict); every problem is reported in one ConfigError."""
    try:
        if isinstance(data, str):
            return InsightBatch.model_validate_json(data)
        return InsightBatch.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'batch'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid insight batch: {problems}") from None


# --- the default catalogue ----------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    "synthetic": {
        "as_of": "2026-01-01",
        "channels": ["email", "sms", "app_push", "social", "search"],
        "campaigns": ["campaign-1", "campaign-2"],
        "tx_channels": ["store", "web", "app"],
        "creatives": [],
    },
    "cdnow": {"as_of": "1998-07-01", "channels": [], "campaigns": [], "tx_channels": [], "creatives": []},
}
"""Public facts per built-in dataset: reference date and the declared key lists (campaigns the
coordinator ran, channels it uses). Channel and campaign names are the coordinator's own vocabulary."""


SEGMENT_PROFILE_WEIGHT = 0.3
"""Each segment profile's share of a default batch's budget (was 0.5: the headroom of its 1 % goal went to the
funnels, whose step rates are the tighter goal)."""


def default_queries(*, channels: list[str], campaigns: list[str], tx_channels: list[str],
                    creatives: list[str] | None = None) -> list[_Query]:
    """The whole catalogue; event-based queries only when channels/campaigns (and creatives) are declared."""
    # Weights (shares of the batch's budget): segment profiles count large groups and stay below 1 % mean relative error
    # with 0.3 of a share each; the funnel by channel divides small channels' deep stages and gets the most. Measured
    # at 1 M customers, 10 partners, epsilon 1, delta 1e-7 (the delta such a federation runs at), distributed noise
    # (benchmarks/insights_distributed.py, docs/insights.md).
    queries: list[_Query] = [
        SegmentProfile(name="segment-profile-rfm", title="Segment profile by RFM segment", by="rfm_segment",
                       weight=SEGMENT_PROFILE_WEIGHT),
        SegmentProfile(name="segment-profile-lifecycle", title="Segment profile by lifecycle stage",
                       by="lifecycle_stage", weight=SEGMENT_PROFILE_WEIGHT),
        LtvTiers(name="ltv-tiers", title="LTV tiers: share of customers and value, growth"),
    ]
    if channels:
        queries += [
            Funnel(name="funnel-by-channel", title="Conversion funnel by channel", by="channel", channels=channels,
                   weight=5.0),
            Funnel(name="funnel-by-segment", title="Conversion funnel by RFM segment", by="rfm_segment", weight=2.0),
            GoldenHours(name="golden-hours", title="Golden attention hours per RFM segment"),
            ChannelResponse(name="channel-response", title="Channel response rates by RFM segment",
                            channels=channels),
        ]
    if channels and creatives:
        queries.append(ChannelCreative(name="channel-creative", title="Best channel and creative per RFM segment",
                                       channels=channels, creatives=creatives, weight=2.0))
    if campaigns:
        queries.append(AbTest(name="ab-lift", title="A/B and campaign lift", campaigns=campaigns, weight=2.0))
    if tx_channels:
        queries.append(GroupBy(name="spend-by-channel", title="Order value by purchase channel (generic group-by)",
                               table="transactions", group_by=["channel"], keys={"channel": tx_channels},
                               value="amount", aggregates=["mean"], bounds=(0.0, 500.0), max_rows_per_customer=5))
    else:
        queries.append(GroupBy(name="spend-by-segment", title="Order value by RFM segment (generic group-by)",
                               table="transactions", group_by=["rfm_segment"], value="amount", aggregates=["mean"],
                               bounds=(0.0, 500.0), max_rows_per_customer=5))
    return queries


def default_batch(dataset: str, *, epsilon: float, delta: float = 1e-6, as_of: str | None = None,
                  mechanism: str = "gaussian", min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
                  suppression_margin_sd: float = 0.0, requester: str = "analyst",
                  only: list[str] | None = None) -> InsightBatch:
    """The whole catalogue for a built-in dataset (or a folder laid out like the synthetic one)."""
    preset = PRESETS.get(dataset, PRESETS["synthetic"])
    queries = default_queries(channels=preset["channels"], campaigns=preset["campaigns"],
                              tx_channels=preset["tx_channels"], creatives=preset.get("creatives") or [])
    if only:
        unknown = sorted(set(only) - {q.name for q in queries})
        if unknown:
            raise ConfigError(f"unknown insight(s) {', '.join(unknown)}; the catalogue has "
                              f"{', '.join(q.name for q in queries)}")
        queries = [q for q in queries if q.name in only]
    return parse_batch({
        "features": {"as_of": as_of or preset["as_of"]},
        "queries": [q.model_dump(mode="json") for q in queries],
        "epsilon": epsilon, "delta": delta, "mechanism": mechanism, "min_group_size": min_group_size,
        "suppression_margin_sd": suppression_margin_sd, "requester": requester,
    })

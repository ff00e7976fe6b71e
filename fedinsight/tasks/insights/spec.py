"""Insight specs: an analyst's own questions in one TOML file, with their own campaign and channel names.

Why a spec: the catalogue's queries are typed and bounded (:mod:`.catalogue`), but their group keys --
campaigns, arms, channels, categories -- are the user's vocabulary, not the synthetic data's. A spec names
the insights to compute (a preset, its own ``[[insight]]`` entries, or both), the keys of each dimension
(``[keys]``: declared lists, or ``"discover"``), the time window, the reporting time zone, the budget and its
split, and optionally the federation's sizes for the planner (:mod:`.planner`)::

    preset = "marketing-overview"     # the built-in catalogue, with the keys below
    epsilon = 2.0
    timezone = "local"                # each partner's own zone; or e.g. "America/New_York"

    [window]
    start = "2025-10-01"              # events before it are ignored
    end = "2026-01-01"                # the reference date: nothing on or after it counts

    [keys]
    campaigns = ["春节大促", "Black Friday"]
    channels = "discover"             # DP key selection across partners (:mod:`.discovery`)

    [[insight]]
    name = "best-hour-per-channel"
    kind = "golden_hours"
    by = "channel"                    # channels come from [keys]

A key list is never a partner's raw list of values: it is declared here, or discovered with OpenDP's
threshold mechanism on each partner (a charged release of its own). A vocabulary a query needs that the spec
does not declare is discovered (``arms`` default to ``["A", "B"]``, stages to the funnel's four).

One spec is one insights job, whichever door it comes through: ``fedinsight insights run``, ``simulate insights
--spec``, ``job run insights -o spec=...``, the HTTP API or ``Federation.simulate("insights", spec=...)``; the
options carry it as canonical JSON (:func:`canonical`).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import FUNNEL_STAGES
from fedinsight.privacy.suppression import DEFAULT_MIN_GROUP_SIZE, MIN_GROUP_FLOOR
from fedinsight.tasks.insights.catalogue import InsightBatch, default_queries, parse_batch
from fedinsight.tasks.insights.customer_features import check_zone

DISCOVER = "discover"
PRESET_NAMES = ("marketing-overview",)
PLACEHOLDER = "\u2039to be discovered\u203a"
"""The key a discovered vocabulary holds while the job is being planned (layouts, validation, the planner)."""


@dataclass(frozen=True)
class Vocabulary:
    """One dimension's keys: which column they are values of, and whether they may be discovered."""

    table: str
    column: str
    discoverable: bool = True
    default: tuple[str, ...] = ()  # used when the spec does not declare it (instead of discovery)
    what: str = ""


VOCABULARIES: dict[str, Vocabulary] = {
    "campaigns": Vocabulary("events", "campaign", what="campaigns (A/B tests, campaign group-bys)"),
    "arms": Vocabulary("events", "arm", discoverable=False, default=("A", "B"),
                       what="A/B arms, control first"),
    "channels": Vocabulary("events", "channel", what="marketing channels (funnels, response, hours)"),
    "creatives": Vocabulary("events", "creative", what="creatives (ad, message or content variants: channel x "
                                                       "creative x segment)"),
    "purchase_channels": Vocabulary("transactions", "channel", what="where customers buy (order group-bys)"),
    "categories": Vocabulary("transactions", "category", what="product categories"),
    "regions": Vocabulary("customers", "region", what="customer regions"),
    "genders": Vocabulary("customers", "gender"),
    "occupations": Vocabulary("customers", "occupation"),
    "stages": Vocabulary("events", "stage", discoverable=False, default=FUNNEL_STAGES, what="funnel stages"),
}
"""The vocabularies a spec's ``[keys]`` may name, and the column of each."""

_GROUP_BY_VOCAB: dict[tuple[str, str], str] = {
    ("events", "campaign"): "campaigns", ("events", "channel"): "channels", ("events", "arm"): "arms",
    ("events", "stage"): "stages", ("transactions", "channel"): "purchase_channels",
    ("transactions", "category"): "categories",
}
_CUSTOMER_VOCAB = {"region": "regions", "gender": "genders", "occupation": "occupations"}


def group_by_vocabulary(table: str, column: str) -> str | None:
    """The vocabulary of a generic group-by's raw column (a customer attribute on any table)."""
    return _GROUP_BY_VOCAB.get((table, column)) or _CUSTOMER_VOCAB.get(column)


# --- the spec file --------------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    start: str | None = Field(None, description="Events before this date are ignored.")
    end: str | None = Field(None, description="The reference date (as_of): nothing on or after it counts.")


class Discovery(_Strict):
    """How keys marked ``"discover"`` are found: OpenDP's threshold mechanism on every partner."""

    max_keys: int = Field(20, ge=1, le=200, description="Keys kept per dimension, most customers first.")
    max_keys_per_customer: int = Field(2, ge=1, le=20, description=(
        "Keys of one dimension a customer counts towards (their earliest): the release's sensitivity."))
    min_customers: int | None = Field(None, ge=MIN_GROUP_FLOOR, description=(
        "A key must reach this many customers (noisy) at one partner; default: the minimum group size."))
    weight: float = Field(1.0, gt=0, description="Share of the budget, relative to the insights' weights.")
    delta: float | None = Field(None, gt=0, lt=1, description=(
        "Chance that a key of a single customer shows at all (added to the job's delta); default delta / 1000."))
    expect_keys: int = Field(5, ge=1, le=200, description="How many keys the planner assumes a dimension finds.")


class Sizes(_Strict):
    """The federation's sizes, for the planner (declared, or from a charged noisy count: ``plan --count``)."""

    partners: int | None = Field(None, ge=1)
    customers: int | None = Field(None, ge=0, description="Customers over all partners.")
    purchasers: int | None = Field(None, ge=0, description="Customers with a purchase.")
    exposed: int | None = Field(None, ge=0, description="Customers with an exposure event.")
    clicked: int | None = Field(None, ge=0)
    participated: int | None = Field(None, ge=0)
    converted: int | None = Field(None, ge=0)


KeySetting = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(min_length=1,
                                                                                      max_length=500)] | Literal[
    "discover"]


class InsightSpec(_Strict):
    """An analyst's spec (see the module docstring). Unknown fields are refused, never ignored."""

    title: str = ""
    preset: Literal["marketing-overview"] | None = None
    epsilon: float | None = Field(None, gt=0, le=100)
    delta: float | None = Field(None, gt=0, lt=1)
    mechanism: Literal["gaussian", "laplace"] | None = None
    min_group_size: int | None = Field(None, ge=MIN_GROUP_FLOOR)
    suppression_margin_sd: float | None = Field(None, ge=0, le=5)
    timezone: str = "local"
    window: Window = Field(default_factory=Window)
    keys: dict[str, KeySetting] = Field(default_factory=dict)
    discovery: Discovery = Field(default_factory=Discovery)
    split: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    federation: Sizes = Field(default_factory=Sizes)
    features: dict[str, Any] = Field(default_factory=dict)
    insight: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("keys")
    @classmethod
    def _vocabularies(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(VOCABULARIES))
        if unknown:
            raise ValueError(f"unknown key list(s) {', '.join(unknown)}; known: {', '.join(VOCABULARIES)}")
        for name, keys in value.items():
            if keys == DISCOVER and not VOCABULARIES[name].discoverable:
                raise ValueError(f"{name} cannot be discovered: declare them (e.g. {list(VOCABULARIES[name].default)})")
            if isinstance(keys, list):
                if len(set(keys)) != len(keys) or "other" in keys:
                    raise ValueError(f"{name} must not repeat keys or use the reserved key 'other'")
                if name == "arms" and len(keys) != 2:
                    raise ValueError("arms must be two: control first, then treatment")
        return value

    @field_validator("features")
    @classmethod
    def _features(cls, value: dict[str, Any]) -> dict[str, Any]:
        for reserved, where in (("as_of", "[window] end"), ("events_from", "[window] start")):
            if reserved in value:
                raise ValueError(f"set {reserved} as {where}")
        return value

    @model_validator(mode="after")
    def _something(self) -> InsightSpec:
        if not self.preset and not self.insight:
            raise ValueError(f"name a preset ({', '.join(PRESET_NAMES)}) or at least one [[insight]]")
        return self


def parse_spec(source: str | Path | dict[str, Any] | InsightSpec) -> InsightSpec:
    """A spec from TOML or JSON text, a file, or a dict; every problem in one ConfigError."""
    if isinstance(source, InsightSpec):
        return source
    where = "insight spec"
    if isinstance(source, Path):
        where = str(source)
        try:
            source = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the insight spec {source}: {exc.strerror or exc}") from None
    if isinstance(source, str):
        text = source.strip()
        if not text:
            raise ConfigError(f"{where} is empty")
        try:
            data = json.loads(text) if text.startswith("{") else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    else:
        data = dict(source)
    if "insights" in data and "insight" not in data:  # JSON callers tend to use the plural
        data["insight"] = data.pop("insights")
    try:
        return InsightSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid {where}: {problems}") from None


def canonical(spec: InsightSpec) -> str:
    """The spec as one line of JSON (what the options and a job's run config carry)."""
    return spec.model_dump_json(exclude_defaults=True)


def looks_like_spec_file(value: str) -> bool:
    """A command-line value naming a spec file rather than holding the spec's text."""
    return "\n" not in value and not value.lstrip().startswith("{") and "=" not in value


# --- from a spec to a batch ------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyNeed:
    """One key field of one query that a vocabulary fills: ``("channels",)`` or ``("keys", "category")``."""

    query: str
    path: tuple[str, ...]
    vocabulary: str


def _preset_queries(spec: InsightSpec, sources: dict[str, str]) -> list[dict[str, Any]]:
    """The built-in catalogue as query dicts whose key fields are left for the vocabularies to fill."""
    def present(name: str) -> bool:
        return sources.get(name) != "absent"

    queries = default_queries(channels=[PLACEHOLDER] if present("channels") else [],
                              campaigns=[PLACEHOLDER] if present("campaigns") else [],
                              tx_channels=[PLACEHOLDER] if present("purchase_channels") else [],
                              creatives=[PLACEHOLDER] if spec.keys.get("creatives") else [])  # only when asked
    out = []
    for q in queries:
        data = q.model_dump(mode="json")
        data.pop("timezone", None)  # the spec's zone applies
        data.pop("channels", None)
        data.pop("campaigns", None)
        data.pop("creatives", None)
        if data.get("kind") == "group_by" and "channel" in data.get("keys", {}):
            data["keys"] = {k: v for k, v in data["keys"].items() if k != "channel"}
        out.append(data)
    return out


def key_needs(query: dict[str, Any]) -> list[KeyNeed]:
    """The key fields of ``query`` a vocabulary must fill (those the query does not state itself)."""
    name, kind = str(query.get("name", "?")), query.get("kind")
    needs: list[KeyNeed] = []

    def need(path: tuple[str, ...], vocab: str) -> None:
        node: Any = query
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node in (None, [], {}):
            needs.append(KeyNeed(name, path, vocab))

    by = query.get("by", "channel" if kind == "funnel" else None)
    if kind in ("funnel", "golden_hours") and by == "channel" or kind in ("channel_response", "channel_creative"):
        need(("channels",), "channels")
    if kind == "channel_creative":
        need(("creatives",), "creatives")
    if kind == "ab_test":
        need(("campaigns",), "campaigns")
        need(("arms",), "arms")
    if kind == "group_by":
        table = str(query.get("table", ""))
        for column in query.get("group_by") or []:
            vocab = group_by_vocabulary(table, str(column))
            if vocab is not None:
                need(("keys", str(column)), vocab)
    return needs


def _fill(query: dict[str, Any], need: KeyNeed, keys: list[str]) -> None:
    node = query
    for part in need.path[:-1]:
        node = node.setdefault(part, {})
    node[need.path[-1]] = list(keys)


@dataclass
class SpecJob:
    """A spec made concrete for one job: its queries (key fields open), where each vocabulary's keys come from,
    and the budget settings the options left to it."""

    spec: InsightSpec
    queries: list[dict[str, Any]]
    sources: dict[str, str]  # vocabulary -> "declared" | "discover" | "default"
    declared: dict[str, list[str]]
    settings: dict[str, Any]  # epsilon, delta, mechanism, min_group_size, suppression_margin_sd, requester
    features: dict[str, Any]
    needs: list[KeyNeed] = field(default_factory=list)

    @property
    def discover(self) -> list[str]:
        """Vocabularies to discover, in a stable order (only those a query needs)."""
        wanted = {n.vocabulary for n in self.needs}
        return [v for v in VOCABULARIES if v in wanted and self.sources.get(v) == DISCOVER]

    def batch(self, discovered: dict[str, list[str]] | None = None, *,
              only: list[str] | None = None) -> tuple[InsightBatch, list[dict[str, Any]]]:
        """The batch with every key field filled: declared keys, discovered ones (``discovered``), or -- while
        planning, ``discovered=None`` -- a placeholder. Queries a discovery left without keys are skipped."""
        keys = dict(self.declared)
        skipped: list[dict[str, Any]] = []
        for vocab in self.discover:
            keys[vocab] = [PLACEHOLDER] if discovered is None else list(discovered.get(vocab, []))
        queries = []
        for query in self.queries:
            if only and query["name"] not in only:
                continue
            q = json.loads(json.dumps(query))
            empty = [n.vocabulary for n in self.needs if n.query == q["name"] and not keys.get(n.vocabulary)]
            if empty:
                skipped.append({"name": q["name"], "kind": q.get("kind"), "reason": (
                    f"no {', '.join(sorted(set(empty)))} held by at least the discovery threshold of customers at "
                    "any partner (its budget was charged with the plan)")})
                continue
            for need in self.needs:
                if need.query == q["name"]:
                    _fill(q, need, keys[need.vocabulary])
            queries.append(q)
        if only:
            unknown = sorted(set(only) - {q["name"] for q in self.queries})
            if unknown:
                raise ConfigError(f"unknown insight(s) {', '.join(unknown)}; the spec has "
                                  f"{', '.join(q['name'] for q in self.queries)}")
        if not queries:
            raise ConfigError("none of the spec's insights has keys to group by: " + "; ".join(
                s["reason"] for s in skipped))
        batch = parse_batch({"features": self.features, "queries": queries, **self.settings})
        return batch, skipped


def spec_job(spec: InsightSpec, *, epsilon: float, delta: float, mechanism: str, min_group_size: int,
             suppression_margin_sd: float, requester: str, as_of: str | None,
             defaults: dict[str, list[str]] | None = None) -> SpecJob:
    """The job a spec describes; the spec's own budget settings win over the options' (``epsilon`` ...).

    ``defaults``: key lists a built-in dataset declares (its public vocabulary), used for vocabularies the spec
    leaves out; anything else left out is discovered.
    """
    end = spec.window.end or as_of
    if not end:
        raise ConfigError("the spec needs its reference date: [window] end = \"2026-01-01\" (or --as-of)")
    sources: dict[str, str] = {}
    declared: dict[str, list[str]] = {}
    for name, vocab in VOCABULARIES.items():
        setting = spec.keys.get(name)
        if isinstance(setting, list):
            sources[name], declared[name] = "declared", list(setting)
        elif setting == DISCOVER:
            sources[name] = DISCOVER
        elif defaults and defaults.get(name) is not None:
            keys = list(defaults[name])
            sources[name] = "default" if keys else "absent"
            if keys:
                declared[name] = keys
        elif vocab.default:
            sources[name], declared[name] = "default", list(vocab.default)
        else:
            sources[name] = DISCOVER
    queries = _preset_queries(spec, sources) if spec.preset else []
    names = {q["name"] for q in queries}
    for i, raw in enumerate(spec.insight):
        if not isinstance(raw, dict) or "name" not in raw or "kind" not in raw:
            raise ConfigError(f"[[insight]] number {i + 1} needs a name and a kind")
        if raw["name"] in names:  # an own entry replaces the preset's of the same name
            queries = [q for q in queries if q["name"] != raw["name"]]
        queries.append(dict(raw))
        names.add(raw["name"])
    unknown_split = sorted(set(spec.split) - {q["name"] for q in queries})
    if unknown_split:
        raise ConfigError(f"[split] names unknown insight(s) {', '.join(unknown_split)}")
    for q in queries:
        if q["name"] in spec.split:
            q["weight"] = spec.split[q["name"]]
        if q.get("kind") == "golden_hours" and "timezone" not in q:
            q["timezone"] = spec.timezone
    needs = [n for q in queries for n in key_needs(q)]
    settings = {
        "epsilon": spec.epsilon if spec.epsilon is not None else epsilon,
        "delta": spec.delta if spec.delta is not None else delta,
        "mechanism": spec.mechanism or mechanism,
        "min_group_size": spec.min_group_size if spec.min_group_size is not None else min_group_size,
        "suppression_margin_sd": (spec.suppression_margin_sd if spec.suppression_margin_sd is not None
                                  else suppression_margin_sd),
        "requester": requester,
    }
    features = {**spec.features, "as_of": end, **({"events_from": spec.window.start} if spec.window.start else {})}
    job = SpecJob(spec, queries, sources, declared, settings, features, needs)
    job.batch()  # every query is validated now, before anything runs
    return job


def discovery_threshold_floor(spec: InsightSpec, min_group_size: int = DEFAULT_MIN_GROUP_SIZE) -> int:
    return spec.discovery.min_customers or min_group_size

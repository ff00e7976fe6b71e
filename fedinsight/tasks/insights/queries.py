"""What analysts may submit through the API: named entries of the insight catalogue, nothing free-form.

Each entry is one query of :func:`fedinsight.tasks.insights.catalogue.default_queries` for the
coordinator's catalogue preset (its declared channels and campaigns). An analyst picks the query, may
move its reference date (``as_of``, the one filter the catalogue exposes) and picks an ε up to
:data:`MAX_QUERY_EPSILON`; the job prices, charges and noises it like any insights job. Every release
therefore goes through a task that bounds contributions, adds calibrated noise and charges the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedinsight.core.errors import ConfigError
from fedinsight.tasks.insights.catalogue import PRESETS, default_queries

DEFAULT_QUERY_EPSILON = 0.5
MAX_QUERY_EPSILON = 2.0
FILTERS: dict[str, type] = {"as_of": str}
"""Filters an analyst may set (a sweep over one of them is what the probing detector refuses)."""


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    kind: str
    title: str


def catalogue(preset: str) -> list[CatalogueEntry]:
    """The submittable queries for the coordinator's catalogue preset."""
    p = PRESETS.get(preset, PRESETS["synthetic"])
    return [CatalogueEntry(q.name, q.kind, q.title)  # type: ignore[attr-defined]
            for q in default_queries(channels=p["channels"], campaigns=p["campaigns"], tx_channels=p["tx_channels"],
                                     creatives=p.get("creatives") or [])]


def job_options(name: str, filters: dict[str, Any], epsilon: float | None, preset: str) -> dict[str, Any]:
    """The insights job's run options for one catalogue query; ConfigError on anything not allowed."""
    names = [e.name for e in catalogue(preset)]
    if name not in names:
        raise ConfigError(f"no query '{name}' in the catalogue (available: {', '.join(names)})")
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise ConfigError(f"query '{name}' has no filter {', '.join(unknown)} (allowed: {', '.join(FILTERS)})")
    for key, value in filters.items():
        if not isinstance(value, FILTERS[key]):
            raise ConfigError(f"filter '{key}' must be a {FILTERS[key].__name__}")
    eps = DEFAULT_QUERY_EPSILON if epsilon is None else float(epsilon)
    if not 0 < eps <= MAX_QUERY_EPSILON:
        raise ConfigError(f"epsilon must be in (0, {MAX_QUERY_EPSILON}] for one query (got {eps})")
    options: dict[str, Any] = {"only": name, "epsilon": eps}
    if "as_of" in filters:
        options["as-of"] = filters["as_of"]
    return options


# --- an analyst's own spec -----------------------------------------------------------------------------

def spec_job_options(source: str | dict[str, Any], epsilon: float | None, *,
                     accept_suppression: bool = False) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The insights job's run options for an analyst's spec (TOML/JSON text or an object), and what the probing
    detector judges it by: the spec's identity without its window and key lists, and those as its filters -- so
    a spec asked again and again with one campaign list or one date nudged is refused like a nudged filter.

    The spec's epsilon (or ``epsilon``, default :data:`DEFAULT_QUERY_EPSILON`) is capped at
    :data:`MAX_QUERY_EPSILON` like a catalogue query's; ConfigError on anything not allowed.
    """
    import hashlib
    import json

    from fedinsight.tasks.insights.spec import canonical, parse_spec

    spec = parse_spec(source)
    eps = spec.epsilon if spec.epsilon is not None else (DEFAULT_QUERY_EPSILON if epsilon is None else float(epsilon))
    if epsilon is not None and spec.epsilon is not None and abs(float(epsilon) - spec.epsilon) > 1e-12:
        raise ConfigError(f"the spec says epsilon {spec.epsilon:g} and the request {epsilon:g}: give one")
    if not 0 < eps <= MAX_QUERY_EPSILON:
        raise ConfigError(f"epsilon must be in (0, {MAX_QUERY_EPSILON}] for one spec (got {eps})")
    spec = spec.model_copy(update={"epsilon": eps})
    identity = json.loads(canonical(spec.model_copy(update={"window": None, "keys": {}})))
    name = "spec:" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    filters: dict[str, Any] = {"window.start": spec.window.start or "", "window.end": spec.window.end or ""}
    filters.update({f"keys.{k}": json.dumps(v, ensure_ascii=False) for k, v in sorted(spec.keys.items())})
    options: dict[str, Any] = {"spec": canonical(spec), "epsilon": eps}
    if accept_suppression:
        options["accept-suppression"] = True
    return options, name, filters

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
            for q in default_queries(channels=p["channels"], campaigns=p["campaigns"], tx_channels=p["tx_channels"])]


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

"""The query catalogue analysts may submit through the API: each entry is a job template.

Analysts never write free-form queries: a catalogue entry names the task that computes it, the filters
it accepts (typed), and nothing else, so every release goes through a task that bounds contributions,
adds calibrated noise and charges the ledger. Submitting an entry whose task is not installed on this
coordinator is refused with the list of what is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedinsight.errors import ConfigError


@dataclass(frozen=True)
class CatalogueQuery:
    """One submittable query: which task computes it and which filters it takes."""

    name: str
    task: str
    description: str
    filters: dict[str, type] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    filter_prefix: str = "filter-"  # run-config key = prefix + filter name

    def run_options(self, filters: dict[str, Any]) -> dict[str, Any]:
        """The job's run config for these filters; unknown or mistyped filters are a ConfigError."""
        unknown = sorted(set(filters) - set(self.filters))
        if unknown:
            allowed = ", ".join(sorted(self.filters)) or "none"
            raise ConfigError(f"query '{self.name}' has no filter {', '.join(unknown)} (allowed: {allowed})")
        out = dict(self.options)
        for key, value in filters.items():
            kind = self.filters[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise ConfigError(f"filter '{key}' of query '{self.name}' must be a {kind.__name__}")
            out[f"{self.filter_prefix}{key}"] = value
        return out


_SEGMENT_FILTERS: dict[str, type] = {"region": str, "channel": str, "campaign": str, "segment": str,
                                     "min-age": int, "max-age": int}

QUERY_CATALOGUE: dict[str, CatalogueQuery] = {q.name: q for q in (
    CatalogueQuery("segment-sizes", "insights", "Customers per segment (noisy counts, small groups suppressed).",
                   _SEGMENT_FILTERS, {"query": "segment-sizes"}),
    CatalogueQuery("funnel-conversion", "insights", "Exposure -> click -> participate -> convert rates.",
                   _SEGMENT_FILTERS, {"query": "funnel-conversion"}),
    CatalogueQuery("campaign-lift", "insights", "A/B lift of a campaign with its confidence interval.",
                   _SEGMENT_FILTERS, {"query": "campaign-lift"}),
    CatalogueQuery("golden-hours", "insights", "Best channel and hour to reach each segment.",
                   _SEGMENT_FILTERS, {"query": "golden-hours"}),
    CatalogueQuery("repurchase-model", "secagg",
                   "Repurchase propensity model trained with DP-SGD under secure aggregation.",
                   {"cutoff": str}, {}, filter_prefix=""),
)}

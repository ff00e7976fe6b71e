"""The API's request and response models: what ``/openapi.json`` documents, and all a caller ever gets back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_OFFSET = 2**31 - 1
"""Offsets and sequence numbers a query may name: far beyond any store, and within every database's integers
(a larger value is a 422 that says so, never a driver error)."""


class Problem(BaseModel):
    """Every error the API returns: a sentence saying what to fix (or, for a request that does not match the
    schema, FastAPI's list of the fields that are wrong)."""

    detail: str | list[dict[str, Any]]


_MEANING = {
    400: "The request could not be read (a malformed Content-Length or body)",
    401: "Missing, unknown or revoked API token (checked before the body is read)",
    403: "The token's role may not do this, or the request was refused as probing for individuals",
    404: "No such resource",
    409: "The job was refused before anything ran (budget, or most answers would be suppressed)",
    413: "The request body is larger than the API accepts",
    422: "A parameter or the body does not match the schema or its bounds",
    429: "Rate limit or insight read limit reached; retry after the Retry-After header's seconds",
    503: "This API instance cannot start jobs",
}


def errors(*codes: int, public: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: what the gate may answer on any path (400, 413, 429; 401 unless ``public``)
    and the route's own ``codes``, each a :class:`Problem`."""
    common = {400, 413, 429} | (set() if public else {401})
    return {code: {"model": Problem, "description": _MEANING[code]} for code in sorted(common | set(codes))}


class Health(BaseModel):
    status: str
    version: str
    federation: str


class InsightSummary(BaseModel):
    id: str
    job_id: str
    name: str
    kind: str
    epsilon: float | None
    created_at: str


class Insight(InsightSummary):
    payload: dict[str, Any]


class InsightPage(BaseModel):
    items: list[InsightSummary]
    total: int
    limit: int
    offset: int


class CatalogueEntry(BaseModel):
    name: str
    task: str
    description: str
    filters: dict[str, str]
    available: bool


class QueryRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"query": "ltv-tiers", "filters": {"as_of": "2025-06-30"}, "epsilon": 0.5},
        {"spec": {"window": {"end": "2026-01-01"}, "insight": [{"name": "tiers", "kind": "ltv_tiers"}]},
         "epsilon": 1.0}]})

    query: str | None = Field(None, description="A name from GET /catalogue (or give a spec)")
    filters: dict[str, Any] = Field(default_factory=dict, description="Only as_of (a date) can be set")
    epsilon: float | None = Field(None, description="Privacy cost of this query (default 0.5, at most 2)")
    spec: str | dict[str, Any] | None = Field(None, description=(
        "Instead of a catalogue query: an insight spec (TOML or JSON text, or an object) with your own insights, "
        "campaigns, channels, window and time zone; see docs/insights.md"))
    accept_suppression: bool = Field(False, description=(
        "Run a spec even when its plan says most answers would be suppressed (otherwise refused, nothing charged)"))


class JobOut(BaseModel):
    id: str
    task: str
    status: str
    requester: str
    created_at: str
    finished_at: str | None
    error: str


def job_out(job: Any) -> JobOut:
    d = job.as_dict()
    return JobOut(id=d["id"], task=d["task"], status=d["status"], requester=d["requester"],
                  created_at=d["created_at"], finished_at=d["finished_at"], error=d["error"])


class PartnerBudget(BaseModel):
    partner_id: str
    epsilon_budget: float
    epsilon_spent: float
    epsilon_remaining: float
    delta: float


class BudgetOut(BaseModel):
    scope: str = Field(description="'federation' (the tightest partner), 'partner' or 'all-partners'")
    epsilon_remaining: float
    partners: list[PartnerBudget] | None = None


class SessionOut(BaseModel):
    token: str = Field(description="The session token: send it as the bearer token until it expires")
    expires_at: str


class AuditEntryOut(BaseModel):
    seq: int
    at: str
    actor: str
    role: str
    action: str
    target: str
    outcome: str
    epsilon: float | None
    detail: dict[str, Any]
    hash: str


class AuditVerifyOut(BaseModel):
    ok: bool
    entries: int
    head_hash: str
    problems: list[str]


class AlertOut(BaseModel):
    """One access alert (:class:`fedinsight.coordinator.anomaly.Alert`), as ``fedinsight audit alerts`` lists it."""

    token_id: str
    figure: str
    hour: int
    value: float
    threshold: float
    locked: bool
    at: str
    words: str


class UnlockOut(BaseModel):
    token_id: str
    unlocked: bool

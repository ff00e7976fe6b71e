"""``/catalogue`` and ``/queries``: catalogue queries or an analyst's own insight spec can be submitted (each an
insights job that prices, charges and noises every release), and a query that probes for individuals (one filter,
window or key list nudged, again and again) is refused before any job starts."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, HTTPException, Request

from fedinsight.coordinator.api.deps import require, shared
from fedinsight.coordinator.api.schemas import CatalogueEntry, JobOut, QueryRequest, errors, job_out
from fedinsight.coordinator.auth import Permission, Principal
from fedinsight.coordinator.jobs import available_tasks
from fedinsight.core.errors import ConfigError
from fedinsight.tasks.insights.queries import FILTERS as QUERY_FILTERS
from fedinsight.tasks.insights.queries import catalogue as query_catalogue
from fedinsight.tasks.insights.queries import job_options, spec_job_options

log = logging.getLogger("fedinsight.api")
router = APIRouter(tags=["queries"])


@router.get("/catalogue", response_model=list[CatalogueEntry], responses=errors(403))
def catalogue(request: Request, who: Principal = Depends(require(Permission.SUBMIT_QUERY))) -> list[CatalogueEntry]:
    """The queries that can be submitted, their filters, and whether this coordinator can run them."""
    available = "insights" in available_tasks()
    return [CatalogueEntry(name=q.name, task="insights", description=q.title,
                           filters={k: t.__name__ for k, t in QUERY_FILTERS.items()}, available=available)
            for q in query_catalogue(shared(request).catalogue_preset)]


@router.post("/queries", response_model=JobOut, status_code=202,
             responses=errors(403, 404, 409, 422, 503))
def submit_query(body: QueryRequest, request: Request,
                 who: Principal = Depends(require(Permission.SUBMIT_QUERY))) -> JobOut:
    """Start a catalogue query or an insight spec as an insights job; refused if it probes for individuals (or, for
    a spec, if its plan says most answers would be suppressed, unless ``accept_suppression``). Poll GET /jobs/{id}."""
    ctx = shared(request)
    if (body.query is None) == (body.spec is None):
        raise HTTPException(422, "give either a catalogue query (see GET /catalogue) or an insight spec")
    if body.spec is not None:
        try:
            options, name, filters = spec_job_options(body.spec, body.epsilon,
                                                      accept_suppression=body.accept_suppression)
        except ConfigError as exc:
            raise HTTPException(422, str(exc)) from None
        if body.filters:
            raise HTTPException(422, "a spec sets its own window and keys: filters are for catalogue queries")
    else:
        name, filters = str(body.query), body.filters
        if name not in {q.name for q in query_catalogue(ctx.catalogue_preset)}:
            raise HTTPException(404, f"no query '{name}' in the catalogue (see GET /catalogue)")
        try:
            options = job_options(name, filters, body.epsilon, ctx.catalogue_preset)
        except ConfigError as exc:
            raise HTTPException(422, str(exc)) from None
    request.state.target = name
    request.state.audit_detail = {"filters": filters, "epsilon": options.get("epsilon")}
    alerts = ctx.monitor.record_query(who.token_id, name, filters)
    if any(a.locked for a in alerts):
        request.state.refusal = "token-locked"
        raise HTTPException(403, f"token locked: {alerts[-1].words}. An admin runs `fedinsight tokens unlock "
                                 f"{who.token_id}` after looking at `fedinsight audit alerts`")
    verdict = ctx.probes.check(who.token_id, name, filters)
    if verdict.refused:
        request.state.refusal = "refused-probing"
        log.warning("probing refused for token %s (%s): %s", who.token_id, who.name, verdict.reason)
        raise HTTPException(403, verdict.reason)
    if ctx.submit is None:
        raise HTTPException(503, "this API instance cannot start jobs")
    try:
        job = ctx.submit("insights", options, who)
    except ConfigError as exc:
        raise HTTPException(409, str(exc)) from None
    request.state.audit_detail["job"] = job.id
    return job_out(job)

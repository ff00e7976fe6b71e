"""The insights HTTP API (FastAPI; schema at ``/openapi.json``).

Who may do what is in :mod:`fedinsight.coordinator.auth`; abuse limits in :mod:`fedinsight.coordinator.abuse`.
Every request except the unauthenticated ``/health`` and the schema itself is appended to the audit
log with who made it, what it asked for and the HTTP outcome — refusals (401, 403, 429) included.

The API serves only what jobs released into the insight store (noisy aggregates with their error bars,
model summaries) and
the ledger's budget figures. There is no endpoint for partner-level data because the coordinator has
none to serve.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

import fedinsight
from fedinsight.coordinator.abuse import ProbeDetector, TokenBucket
from fedinsight.coordinator.auth import Permission, Principal
from fedinsight.coordinator.state import ENV_CONFIG, CoordinatorState
from fedinsight.core.errors import ConfigError, FedinsightError, NotFoundError
from fedinsight.tasks.insights.queries import FILTERS as QUERY_FILTERS
from fedinsight.tasks.insights.queries import catalogue as query_catalogue
from fedinsight.tasks.insights.queries import job_options

log = logging.getLogger("fedinsight.api")
UNAUDITED = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect"}
AUTH_CACHE_SECONDS = 1.0


# --- response and request models --------------------------------------------------------------------

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
    query: str = Field(description="A name from GET /catalogue")
    filters: dict[str, Any] = Field(default_factory=dict, description="Only as_of (a date) can be set")
    epsilon: float | None = Field(None, description="Privacy cost of this query (default 0.5, at most 2)")


class JobOut(BaseModel):
    id: str
    task: str
    status: str
    requester: str
    created_at: str
    finished_at: str | None
    error: str


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


# --- the app ------------------------------------------------------------------------------------------

class _InsightReader:
    """Reads the insight store's table with SQLAlchemy Core (the API's hottest path)."""

    def __init__(self, state: CoordinatorState) -> None:
        from fedinsight.federation.store import InsightRow

        self.engine = state.insights.engine
        self.table = InsightRow.__table__

    @staticmethod
    def summary(row: Any) -> dict[str, Any]:
        return {"id": str(row.id), "job_id": row.batch_id, "name": row.name, "kind": row.kind,
                "epsilon": row.epsilon, "created_at": row.created_at.isoformat() + "Z"}

    def page(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        from sqlalchemy import func, select

        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.id, t.c.batch_id, t.c.name, t.c.kind, t.c.epsilon, t.c.created_at)
                                .order_by(t.c.id.desc()).limit(limit).offset(offset)).all()
            total = int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
        return [self.summary(r) for r in rows], total

    def get(self, insight_id: str) -> dict[str, Any]:
        from sqlalchemy import select

        row = None
        if insight_id.isdigit():
            with self.engine.connect() as conn:
                row = conn.execute(select(self.table).where(self.table.c.id == int(insight_id))).first()
        if row is None:
            raise NotFoundError(f"no insight '{insight_id}' (see GET /insights)")
        return {**self.summary(row), "payload": json.loads(row.result_json)}


class _AuditWriter:
    """Appends the audit entries of concurrent requests in one transaction each round.

    Each request waits until its own entry is committed before its response starts; under load, entries
    that arrive while one batch is being written go into the next, so the per-request cost of the
    chained, locked append stays small.
    """

    def __init__(self, audit: Any) -> None:
        self.audit = audit
        self.pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None

    async def append(self, item: dict[str, Any]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._drain())
        await future

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await run_in_threadpool(self.audit.append_many, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)


Submitter = Callable[[str, dict[str, Any], Principal], Any]
"""(task, run options, principal) -> Job: starts a job (``jobs.submit_job`` on a coordinator)."""


REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
"""The report page loads nothing and runs no script; the header makes the browser enforce that."""


def create_app(state: CoordinatorState, *, federation: str = "fedinsight", submit: Submitter | None = None,
               catalogue_preset: str = "synthetic",
               requests_per_second: float = 20.0, burst: int = 40, insight_reads_per_minute: int = 600,
               probe_window_s: float = 3600.0, probe_max_variants: int = 3) -> FastAPI:
    """Build the API over a coordinator's state. ``submit`` starts jobs (None: query submission disabled)."""
    app = FastAPI(title="fedinsight insights API", version=fedinsight.__version__,
                  description="De-identified, differentially private insights from a fedinsight federation.")
    rate = TokenBucket(requests_per_second, burst)
    bulk = TokenBucket(insight_reads_per_minute / 60.0, insight_reads_per_minute)
    probes = ProbeDetector(state.db_url, window_s=probe_window_s, max_variants=probe_max_variants)
    audit, tokens, ledger = state.audit, state.tokens, state.ledger
    insights = _InsightReader(state)

    # Dependencies and read endpoints are `async def`: their work (one indexed SQLite read, an HMAC) is far
    # cheaper than a hop to the thread pool, which FastAPI makes for every sync dependency.
    # Verified tokens are remembered for AUTH_CACHE_SECONDS: a revoked token stops working within that time.
    verified: dict[str, tuple[Principal, float]] = {}

    def authenticate(token: str) -> Principal | None:
        now = time.monotonic()
        hit = verified.get(token)
        if hit is not None and hit[1] > now:
            return hit[0]
        who = tokens.authenticate(token)
        if who is not None:
            if len(verified) > 10_000:
                verified.clear()
            verified[token] = (who, now + AUTH_CACHE_SECONDS)
        return who

    async def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        who = authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if who is None:
            raise HTTPException(401, "missing, unknown or revoked API token", {"WWW-Authenticate": "Bearer"})
        request.state.principal = who
        wait = rate.take(who.token_id)
        if wait > 0:
            request.state.refusal = "rate-limited"
            raise HTTPException(429, f"too many requests; retry in {wait:.1f}s", {"Retry-After": f"{wait:.0f}"})
        return who

    def require(permission: Permission) -> Callable[..., Principal]:
        async def check(who: Principal = Depends(principal)) -> Principal:
            if not who.can(permission):
                raise HTTPException(403, f"role '{who.role.value}' may not {permission.value}")
            return who

        return check

    def pull(request: Request, who: Principal, records: int) -> None:
        wait = bulk.take(who.token_id, cost=max(records, 1))
        if wait > 0:
            request.state.refusal = "bulk-pull-refused"
            log.warning("bulk pull refused for token %s (%s): %d records", who.token_id, who.name, records)
            raise HTTPException(429, f"insight read rate exceeded ({insight_reads_per_minute}/min); retry in "
                                     f"{wait:.0f}s", {"Retry-After": f"{wait:.0f}"})

    writer = _AuditWriter(audit)

    async def record(scope: dict[str, Any], status: int, started: float) -> None:
        st = scope.get("state") or {}
        who: Principal | None = st.get("principal")
        outcome = st.get("refusal") or ("ok" if status < 400 else "denied")
        detail: dict[str, Any] = {"status": status, "ms": round((time.perf_counter() - started) * 1000, 2)}
        if query := scope.get("query_string", b"").decode("latin-1"):
            detail["query"] = query[:500]
        if extra := st.get("audit_detail"):
            detail.update(extra)
        await writer.append({"actor": who.name if who else "anonymous", "role": who.role.value if who else "",
                             "action": f"{scope['method']} {scope['path']}", "target": st.get("target", ""),
                             "outcome": outcome, "detail": detail})

    class AuditEveryAccess:
        """Pure ASGI middleware (cheaper than ``@app.middleware``): one audit entry per request, committed
        *before* the response starts, so nothing is disclosed that the log does not record."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] in UNAUDITED:
                await self.inner(scope, receive, send)
                return
            scope.setdefault("state", {})
            started, recorded = time.perf_counter(), [False]

            async def send_after_audit(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start" and not recorded[0]:
                    recorded[0] = True
                    await record(scope, message["status"], started)
                await send(message)

            try:
                await self.inner(scope, receive, send_after_audit)
            except Exception:
                if not recorded[0]:  # an unhandled error: the 500 is sent by the outer error middleware
                    recorded[0] = True
                    await record(scope, 500, started)
                raise

    app.add_middleware(AuditEveryAccess)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(FedinsightError)
    async def _user_error(request: Request, exc: FedinsightError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/health", response_model=Health, tags=["meta"])
    async def health() -> Health:
        """Liveness: no token needed, no data returned."""
        return Health(status="ok", version=fedinsight.__version__, federation=federation)

    @app.get("/insights", response_model=InsightPage, tags=["insights"])
    async def list_insights(request: Request, limit: int = Query(20, ge=1, le=100), offset: int = Query(0, ge=0),
                      who: Principal = Depends(require(Permission.READ_INSIGHTS))) -> InsightPage:
        """Released insights, newest first (summaries; each counts towards the bulk-read limit)."""
        items, total = insights.page(limit, offset)
        pull(request, who, len(items))
        return InsightPage(items=[InsightSummary(**i) for i in items], total=total, limit=limit, offset=offset)

    @app.get("/insights/{insight_id}", response_model=Insight, tags=["insights"])
    async def read_insight(insight_id: str, request: Request,
                           who: Principal = Depends(require(Permission.READ_INSIGHTS))) -> Insight:
        """One released insight with its values and error bars (or a model summary)."""
        request.state.target = insight_id
        pull(request, who, 1)
        return Insight(**insights.get(insight_id))

    @app.get("/catalogue", response_model=list[CatalogueEntry], tags=["queries"])
    def catalogue(who: Principal = Depends(require(Permission.SUBMIT_QUERY))) -> list[CatalogueEntry]:
        """The queries that can be submitted, their filters, and whether this coordinator can run them."""
        from fedinsight.coordinator.jobs import available_tasks

        available = "insights" in available_tasks()
        return [CatalogueEntry(name=q.name, task="insights", description=q.title,
                               filters={k: t.__name__ for k, t in QUERY_FILTERS.items()}, available=available)
                for q in query_catalogue(catalogue_preset)]

    @app.post("/queries", response_model=JobOut, status_code=202, tags=["queries"])
    def submit_query(body: QueryRequest, request: Request,
                     who: Principal = Depends(require(Permission.SUBMIT_QUERY))) -> JobOut:
        """Start a catalogue query as an insights job; refused if it probes for individuals. Poll GET /jobs/{id}."""
        request.state.target = body.query
        request.state.audit_detail = {"filters": body.filters, "epsilon": body.epsilon}
        if body.query not in {q.name for q in query_catalogue(catalogue_preset)}:
            raise HTTPException(404, f"no query '{body.query}' in the catalogue (see GET /catalogue)")
        try:
            options = job_options(body.query, body.filters, body.epsilon, catalogue_preset)
        except ConfigError as exc:
            raise HTTPException(422, str(exc)) from None
        verdict = probes.check(who.token_id, body.query, body.filters)
        if verdict.refused:
            request.state.refusal = "refused-probing"
            log.warning("probing refused for token %s (%s): %s", who.token_id, who.name, verdict.reason)
            raise HTTPException(403, verdict.reason)
        if submit is None:
            raise HTTPException(503, "this API instance cannot start jobs")
        try:
            job = submit("insights", options, who)
        except ConfigError as exc:
            raise HTTPException(409, str(exc)) from None
        request.state.audit_detail["job"] = job.id
        return _job_out(job)

    @app.get("/jobs/{job_id}", response_model=JobOut, tags=["queries"])
    def job_status(job_id: str, request: Request, who: Principal = Depends(principal)) -> JobOut:
        """A job's status: its requester may read it, admins and auditors any job."""
        request.state.target = job_id
        job = state.jobs.get(job_id)
        if not (who.can(Permission.READ_JOBS) or job.requester == f"token:{who.token_id}"):
            raise HTTPException(403, "you may only read your own jobs")
        return _job_out(job)

    @app.get("/jobs/{job_id}/report", response_class=HTMLResponse, tags=["queries"],
             responses={200: {"content": {"text/html": {}}, "description": "The job's self-contained report page"}})
    def job_report(job_id: str, request: Request, who: Principal = Depends(principal)) -> HTMLResponse:
        """The job's HTML run report (the page ``fedinsight report`` writes), for the job's requester, admins and
        auditors. Per-partner budgets appear only for roles that may read every budget."""
        from fedinsight.coordinator.jobs import job_output_dir
        from fedinsight.tasks.runs import render_run_report

        request.state.target = job_id
        job = state.jobs.get(job_id)
        if not (who.can(Permission.READ_JOBS) or job.requester == f"token:{who.token_id}"):
            raise HTTPException(403, "you may only read your own jobs")
        folder = job_output_dir(state.state_dir, job.id)
        if job.status != "completed" or not folder.is_dir():
            raise HTTPException(404, f"job {job.id} has no results to report (status: {job.status})")
        full = who.can(Permission.READ_ALL_BUDGETS)
        html = render_run_report(folder, ledger_url=state.db_url, partner_budgets=full,
                                 title=f"fedinsight {job.task} report")
        return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP, "Cache-Control": "no-store"})

    @app.get("/budget", response_model=BudgetOut, tags=["budget"])
    async def budget(who: Principal = Depends(require(Permission.READ_BUDGET))) -> BudgetOut:
        """Remaining privacy budget: per partner for admins/auditors, the federation's (tightest) for analysts,
        or only the bound partner's for an analyst token bound to one."""
        partners = [ledger.status(p) for p in ledger.partners()]
        rows = [PartnerBudget(partner_id=s.partner_id, epsilon_budget=s.epsilon_budget, epsilon_spent=s.epsilon_spent,
                              epsilon_remaining=s.epsilon_remaining, delta=s.delta) for s in partners]
        if who.can(Permission.READ_ALL_BUDGETS):
            return BudgetOut(scope="all-partners", epsilon_remaining=min((r.epsilon_remaining for r in rows),
                                                                         default=0.0), partners=rows)
        if who.partner_id is not None:
            own = [r for r in rows if r.partner_id == who.partner_id]
            return BudgetOut(scope="partner", epsilon_remaining=own[0].epsilon_remaining if own else 0.0,
                             partners=own)
        return BudgetOut(scope="federation", epsilon_remaining=min((r.epsilon_remaining for r in rows), default=0.0))

    @app.get("/audit", response_model=list[AuditEntryOut], tags=["audit"])
    def read_audit(since: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000), actor: str | None = None,
                   who: Principal = Depends(require(Permission.READ_AUDIT))) -> list[AuditEntryOut]:
        """Audit entries after sequence number ``since`` (auditors only)."""
        return [AuditEntryOut(**e.as_dict()) for e in audit.entries(since_seq=since, limit=limit, actor=actor)]

    @app.get("/audit/verify", response_model=AuditVerifyOut, tags=["audit"])
    def verify_audit(who: Principal = Depends(require(Permission.READ_AUDIT))) -> AuditVerifyOut:
        """Re-check the whole hash chain (auditors only)."""
        result = audit.verify()
        return AuditVerifyOut(ok=result.ok, entries=result.entries, head_hash=result.head_hash,
                              problems=result.problems)

    return app


def _job_out(job: Any) -> JobOut:
    d = job.as_dict()
    return JobOut(id=d["id"], task=d["task"], status=d["status"], requester=d["requester"],
                  created_at=d["created_at"], finished_at=d["finished_at"], error=d["error"])


def app_from_env() -> FastAPI:
    """uvicorn factory used by the coordinator: reads ``$FEDINSIGHT_COORDINATOR_CONFIG``."""
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.jobs import submit_job

    path = os.environ.get(ENV_CONFIG)
    if not path:
        raise ConfigError(f"set {ENV_CONFIG} to the coordinator.toml path")
    config = load_coordinator_config(path, check_files=False)
    state = CoordinatorState.from_config(config)

    def submit(task: str, options: dict[str, Any], who: Principal) -> Any:
        return submit_job(config, state, task, federation=config.coordinator.federation, options=options,
                          requester=f"token:{who.token_id}")

    abuse = config.abuse
    return create_app(state, federation=config.coordinator.federation, submit=submit,
                      catalogue_preset=config.coordinator.catalogue_preset,
                      requests_per_second=abuse.requests_per_second, burst=abuse.burst,
                      insight_reads_per_minute=abuse.insight_reads_per_minute, probe_window_s=abuse.probe_window_s,
                      probe_max_variants=abuse.probe_max_variants)

"""Builds the app: the shared objects (one :class:`~fedinsight.coordinator.api.deps.ApiContext` on
``app.state``), the audit middleware, the error handlers and one router per resource."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fedinsight.coordinator.abuse import ProbeDetector
from fedinsight.coordinator.anomaly import AccessMonitor, Alert, AnomalyLimits
from fedinsight.coordinator.api.audit import AuditEveryAccess, AuditWriter
from fedinsight.coordinator.api.deps import ApiContext, Submitter, TokenCache
from fedinsight.coordinator.api.gate import RequestGate
from fedinsight.coordinator.api.permissions import RoutePermissions
from fedinsight.coordinator.api.reader import InsightReader
from fedinsight.coordinator.api.routes import access, audit, budget, insights, jobs, meta, queries, session
from fedinsight.coordinator.auth import Principal, Role
from fedinsight.coordinator.config import load_coordinator_config
from fedinsight.coordinator.jobs import submit_job
from fedinsight.coordinator.rate_limits import SharedTokenBucket
from fedinsight.coordinator.state import ENV_CONFIG, CoordinatorState
from fedinsight.core.db import make_engine
from fedinsight.core.errors import ConfigError, FedinsightError, NotFoundError
from fedinsight.core.version import __version__
from fedinsight.privacy.audit import enable_sqlite_wal


async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _user_error(request: Request, exc: FedinsightError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


def create_app(state: CoordinatorState, *, federation: str = "fedinsight", submit: Submitter | None = None,
               catalogue_preset: str = "synthetic",
               requests_per_second: float = 20.0, burst: int = 40, insight_reads_per_minute: int = 600,
               probe_window_s: float = 3600.0, probe_max_variants: int = 3,
               anonymous_requests_per_second: float = 2.0, anonymous_burst: int = 20,
               max_body_bytes: int = 65536, mfa_for_analysts: bool = False, session_minutes: int = 60,
               mfa_attempts_per_hour: int = 20, anomaly: AnomalyLimits | None = None,
               anomaly_flush_seconds: float = 2.0) -> FastAPI:
    """Build the API over a coordinator's state. ``submit`` starts jobs (None: query submission disabled).

    The rate limits are token buckets in the coordinator database (shared by every API worker): per token
    (``requests_per_second``, ``burst``), insight records read per token (``insight_reads_per_minute``), and per
    client address for callers without a valid token (``anonymous_*``). ``max_body_bytes``: larger bodies are a 413.
    Admins and auditors (and analysts with ``mfa_for_analysts``) work through sessions opened with a TOTP code
    (``session_minutes`` long; ``mfa_attempts_per_hour`` codes may be tried per token, 5 at once).
    ``anomaly``: the access monitor's floors (alerts into the audit log, locks), counts written every
    ``anomaly_flush_seconds``.
    """
    app = FastAPI(title="fedinsight insights API", version=__version__,
                  description="De-identified, differentially private insights from a fedinsight federation.")
    limits = make_engine(state.db_url)
    enable_sqlite_wal(limits)
    rate = SharedTokenBucket(limits, "requests", requests_per_second, burst)
    bulk = SharedTokenBucket(limits, "insight-reads", insight_reads_per_minute / 60.0, insight_reads_per_minute)
    anonymous = SharedTokenBucket(limits, "anonymous", anonymous_requests_per_second, anonymous_burst)
    mfa_attempts = SharedTokenBucket(limits, "second-factor", mfa_attempts_per_hour / 3600.0, 5)
    mfa_roles = frozenset({Role.ADMIN, Role.AUDITOR} | ({Role.ANALYST} if mfa_for_analysts else set()))
    probes = ProbeDetector(state.db_url, window_s=probe_window_s, max_variants=probe_max_variants)
    # The stores are opened now, not on the first request: a bad key file or accountant fails at start-up.
    audit_log, tokens, ledger = state.audit, state.tokens, state.ledger
    reader = InsightReader(state)

    def alert_to_audit(alert: Alert) -> None:
        audit_log.append(actor="access-monitor", role="system", action="anomaly.alert", target=alert.token_id,
                         outcome="token-locked" if alert.locked else "alert", detail=alert.as_dict())

    monitor = AccessMonitor(state.db_url, anomaly, flush_seconds=anomaly_flush_seconds, report=alert_to_audit)
    writer = AuditWriter(audit_log)
    app.state.api = ApiContext(state=state, federation=federation, catalogue_preset=catalogue_preset,
                               submit=submit, tokens=TokenCache(tokens, state.mfa), rate=rate, bulk=bulk,
                               insight_reads_per_minute=insight_reads_per_minute, probes=probes,
                               insights=reader, ledger=ledger, writer=writer, anonymous=anonymous,
                               max_body_bytes=max_body_bytes, mfa=state.mfa, mfa_roles=mfa_roles,
                               mfa_attempts=mfa_attempts, session_minutes=session_minutes, monitor=monitor)

    routers = [module.router for module in (meta, session, insights, queries, jobs, budget, audit, access)]
    # the gate sits inside the audit: its refusals (401, 403, 413, 429) are audited too
    app.add_middleware(RequestGate, permissions=RoutePermissions(routers))
    app.add_middleware(AuditEveryAccess, writer=writer, monitor=monitor)
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(FedinsightError, _user_error)
    for router in routers:
        app.include_router(router)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory used by the coordinator: reads ``$FEDINSIGHT_COORDINATOR_CONFIG``."""
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
                      probe_max_variants=abuse.probe_max_variants,
                      anonymous_requests_per_second=abuse.anonymous_requests_per_second,
                      anonymous_burst=abuse.anonymous_burst, max_body_bytes=config.api.max_body_bytes,
                      mfa_for_analysts=config.api.mfa_for_analysts, session_minutes=config.api.session_minutes,
                      anomaly=AnomalyLimits(
                          requests=abuse.alert_requests_per_hour, records=abuse.alert_records_per_hour,
                          distinct_insights=abuse.alert_distinct_insights_per_hour,
                          bytes=abuse.alert_bytes_per_hour,
                          overlapping_queries=abuse.alert_overlapping_queries_per_day,
                          baseline_factor=abuse.alert_baseline_factor, lock_factor=abuse.lock_factor))

"""The request dependencies the routes share: who is calling (:func:`principal`), whether their role allows
an action (:func:`require`), and the bulk-read limit on insights (:func:`pull`).

The objects they work with — token cache, rate limiters, stores — are built once per app by
:func:`~fedinsight.coordinator.api.main.create_app` and kept in one :class:`ApiContext` on ``app.state``,
so routes and dependencies are plain module-level functions that find them through the request.

Dependencies and read endpoints are ``async def``: their work (one indexed SQLite read, an HMAC) is far
cheaper than a hop to the thread pool, which FastAPI makes for every sync dependency.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from fedinsight.coordinator.abuse import ProbeDetector
from fedinsight.coordinator.anomaly import AccessMonitor
from fedinsight.coordinator.api.audit import AuditWriter
from fedinsight.coordinator.api.reader import InsightReader
from fedinsight.coordinator.auth import Permission, Principal, Role, TokenStore
from fedinsight.coordinator.mfa import SESSION_PREFIX, MfaStore
from fedinsight.coordinator.rate_limits import SharedTokenBucket
from fedinsight.coordinator.state import CoordinatorState
from fedinsight.privacy.ledger import PrivacyLedger

log = logging.getLogger("fedinsight.api")
AUTH_CACHE_SECONDS = 1.0

Submitter = Callable[[str, dict[str, Any], Principal], Any]
"""(task, run options, principal) -> Job: starts a job (``jobs.submit_job`` on a coordinator)."""


class TokenCache:
    """Who a bearer token (an API token or an MFA session token) stands for. An API token's answer is remembered
    for AUTH_CACHE_SECONDS (a revoked token stops working within that time); a session is checked on every request
    (human roles, few requests: revoking their token ends its sessions at once).

    Why the split between :meth:`peek` and :meth:`resolve`: the gate runs on the event loop, where a database read
    would stall every other request; it takes a remembered answer from memory (:meth:`peek`, most requests) and
    sends only a miss to the thread pool (:meth:`resolve`, the database)."""

    def __init__(self, tokens: TokenStore, mfa: MfaStore) -> None:
        self.tokens = tokens
        self.mfa = mfa
        self.verified: dict[str, tuple[Principal, bool, float]] = {}

    def peek(self, token: str) -> tuple[Principal, bool] | None:
        """The remembered (caller, via a session) for ``token``, or None when not remembered (no database)."""
        hit = self.verified.get(token)
        if hit is not None and hit[2] > time.monotonic():
            return hit[0], hit[1]
        return None

    def resolve(self, token: str) -> tuple[Principal | None, bool]:
        """The caller for ``token`` and whether it came through a session, from the database (blocking)."""
        if token.startswith(f"{SESSION_PREFIX}_"):  # never remembered: revoking a token ends its sessions at once
            token_id = self.mfa.session_token_id(token)
            who = self.tokens.principal_of(token_id) if token_id else None
            return who, who is not None
        who = self.tokens.authenticate(token)
        if who is not None:
            if len(self.verified) > 10_000:
                self.verified.clear()
            self.verified[token] = (who, False, time.monotonic() + AUTH_CACHE_SECONDS)
        return who, False

    def authenticate(self, token: str) -> Principal | None:
        """The caller for an API token (remembered or from the database)."""
        hit = self.peek(token)
        return hit[0] if hit is not None and not hit[1] else self.resolve(token)[0]


@dataclass(frozen=True)
class ApiContext:
    """Everything one app's routes share (``app.state.api``)."""

    state: CoordinatorState
    federation: str
    catalogue_preset: str
    submit: Submitter | None  # None: query submission disabled
    tokens: TokenCache
    rate: SharedTokenBucket  # requests per token
    bulk: SharedTokenBucket  # insight records read per token
    anonymous: SharedTokenBucket  # requests per client address without a valid token
    max_body_bytes: int
    mfa: MfaStore
    mfa_roles: frozenset[Role]  # roles whose API token alone opens only POST /session
    mfa_attempts: SharedTokenBucket  # second-factor attempts per token
    session_minutes: int
    monitor: AccessMonitor  # per-token access baselines, alerts and locks
    insight_reads_per_minute: int
    probes: ProbeDetector
    insights: InsightReader
    ledger: PrivacyLedger
    writer: AuditWriter


def shared(request: Request) -> ApiContext:
    """The :class:`ApiContext` of the app serving ``request``."""
    return request.app.state.api


async def principal(request: Request) -> Principal:
    """The caller, as :class:`~fedinsight.coordinator.api.gate.RequestGate` authenticated (and rate-limited) them
    before the body was read."""
    who: Principal | None = getattr(request.state, "principal", None)
    if who is None:  # only reachable for a public path with no token: such a route must not ask for a principal
        raise HTTPException(401, "missing, unknown or revoked API token", {"WWW-Authenticate": "Bearer"})
    return who


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency refusing (403) a caller whose role lacks ``permission``. The gate makes the same check before
    the body is parsed (it finds ``permission`` on the returned function); this one stays as a second guard."""
    async def check(who: Principal = Depends(principal)) -> Principal:
        if not who.can(permission):
            raise HTTPException(403, forbidden(who, permission))
        return who

    check.permission = permission  # type: ignore[attr-defined]  # read by the gate (api/permissions.py)
    return check


def forbidden(who: Principal, permission: Permission) -> str:
    """The 403 message for a role lacking ``permission`` (the same from the gate and from the dependency)."""
    return f"role '{who.role.value}' may not {permission.value}"


async def pull(request: Request, who: Principal, records: int) -> None:
    """Count ``records`` insight records read against the token's bulk-read limit (429 when exceeded). From the
    worker's lease when it covers them; a database take runs in the thread pool, never on the event loop."""
    ctx = shared(request)
    cost = max(records, 1)
    request.state.records = records  # for the access monitor
    wait = 0.0 if ctx.bulk.take_leased(who.token_id, cost) else await run_in_threadpool(ctx.bulk.take, who.token_id,
                                                                                        cost)
    if wait > 0:
        request.state.refusal = "bulk-pull-refused"
        log.warning("bulk pull refused for token %s (%s): %d records", who.token_id, who.name, records)
        raise HTTPException(429, f"insight read rate exceeded ({ctx.insight_reads_per_minute}/min); retry in "
                                 f"{wait:.0f}s", {"Retry-After": f"{wait:.0f}"})

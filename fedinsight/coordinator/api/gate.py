"""The gate every request passes before any route runs: who is calling, are they within their rate, may their role
use this route, and is the body small enough — in that order, and before a byte of the body is parsed.

Why a pure ASGI middleware and not a FastAPI dependency: FastAPI reads and validates the body *before* it
solves dependencies, so an anonymous caller sending a malformed or huge body would get a 422 (or make the
server read megabytes) instead of a 401. Here:

1. the bearer token is checked from the headers alone: an unknown token on any path but the public ones
   (``/health`` and the schema) is a 401, whatever the body; so is an admin's or auditor's API token anywhere
   but ``POST /session`` (their requests carry a session token opened with a TOTP code,
   :mod:`fedinsight.coordinator.mfa`);
2. rate limits: per token for a known token, per client address for everybody else (failed logins included,
   so guessing tokens is slow); the buckets live in the coordinator database and are shared by all workers
   (:mod:`fedinsight.coordinator.rate_limits`); over the limit is a 429 with ``Retry-After``;
3. the role: a caller whose role lacks a permission the route demands (read off the route's own
   ``require(...)`` dependencies, :mod:`fedinsight.coordinator.api.permissions`) is a 403, so an auditor's
   malformed ``POST /queries`` is told it may not submit queries, not that its JSON is wrong;
4. the body: a ``Content-Length`` above the limit is a 413 before anything is read; a body without one
   (chunked) is read only up to the limit and refused the moment it passes it. The body read is then
   replayed to the route.

Refusals are JSON ``{"detail": ...}`` like every other error, and the audit middleware around the gate
records them.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.concurrency import run_in_threadpool

from fedinsight.coordinator.api.deps import ApiContext, forbidden
from fedinsight.coordinator.api.permissions import RoutePermissions
from fedinsight.coordinator.auth import Permission, Principal
from fedinsight.coordinator.rate_limits import SharedTokenBucket

PUBLIC = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
"""Paths an anonymous caller may reach (still rate limited per address)."""
SESSION_PATH = "/session"
"""The one path a human role's API token reaches without a session (where it trades a code for a session)."""


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _bearer(scope: dict[str, Any]) -> str:
    scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def client_key(scope: dict[str, Any]) -> str:
    """The anonymous caller's bucket: its address as the server sees it (a proxy in front should be the
    only client, and then needs its own limits)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def reply(send: Any, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Send a JSON error response ``{"detail": detail}``."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _retry_after(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(wait)))}


async def _take(bucket: SharedTokenBucket, key: str) -> float:
    """One request from ``bucket``: from the worker's lease in memory when it covers it (most requests), else from
    the database in the thread pool (a write must not block the event loop)."""
    if bucket.take_leased(key):
        return 0.0
    return await run_in_threadpool(bucket.take, key)


async def _identify(ctx: ApiContext, token: str) -> tuple[Principal | None, bool]:
    """The caller for a bearer token and whether it came through a session: from memory when remembered, else from
    the database in the thread pool (a read must not block the event loop)."""
    if not token:
        return None, False
    hit = ctx.tokens.peek(token)
    return hit if hit is not None else await run_in_threadpool(ctx.tokens.resolve, token)


async def _lock_of(ctx: ApiContext, token_id: str) -> str | None:
    """Why the token is locked (or None): remembered, else read in the thread pool."""
    known, reason = ctx.monitor.remembered_lock(token_id)
    return reason if known else await run_in_threadpool(ctx.monitor.locked, token_id)


class RequestGate:
    """Authenticate, rate-limit and bound the body of every HTTP request (see the module docstring)."""

    def __init__(self, inner: Any, permissions: RoutePermissions) -> None:
        self.inner = inner
        self.permissions = permissions

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        ctx: ApiContext = scope["app"].state.api
        state = scope.setdefault("state", {})
        token = _bearer(scope)
        who, via_session = await _identify(ctx, token)
        if who is None:
            wait = await _take(ctx.anonymous, client_key(scope))
            if wait > 0:
                state["refusal"] = "rate-limited"
                await reply(send, 429, f"too many requests; retry in {wait:.1f}s", _retry_after(wait))
                return
            if scope["path"] not in PUBLIC:
                await reply(send, 401, "missing, unknown, expired or revoked API token", {"WWW-Authenticate": "Bearer"})
                return
        else:
            state["principal"], state["session"] = who, via_session
            wait = await _take(ctx.rate, who.token_id)
            if wait > 0:
                state["refusal"] = "rate-limited"
                await reply(send, 429, f"too many requests; retry in {wait:.1f}s", _retry_after(wait))
                return
            if (reason := await _lock_of(ctx, who.token_id)) is not None and scope["path"] not in PUBLIC:
                state["refusal"] = "token-locked"
                await reply(send, 403, f"token locked after unusual access ({reason}); an admin runs "
                                       f"`fedinsight tokens unlock {who.token_id}`")
                return
            if who.role in ctx.mfa_roles and not via_session and scope["path"] not in (*PUBLIC, SESSION_PATH):
                state["refusal"] = "second-factor-required"
                await reply(send, 401, f"{who.role.value} tokens need a second factor: POST {SESSION_PATH} with this "
                                       "token and an X-TOTP code from the authenticator app, then use the session "
                                       "token it returns", {"WWW-Authenticate": "Bearer"})
                return
            if (missing := self._missing(scope, who)) is not None:  # audited "denied", as from the dependency
                await reply(send, 403, forbidden(who, missing))
                return
        await self._bounded(scope, receive, send, ctx.max_body_bytes)

    def _missing(self, scope: dict[str, Any], who: Principal) -> Permission | None:
        """A permission the route demands that ``who``'s role lacks (checked here, before the body is parsed)."""
        return next((p for p in sorted(self.permissions.of(scope)) if not who.can(p)), None)

    async def _bounded(self, scope: dict[str, Any], receive: Any, send: Any, limit: int) -> None:
        too_large = f"request body too large (at most {limit} bytes)"
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not (declared.strip().isascii() and declared.strip().isdigit()):  # '²'.isdigit() is True
                await reply(send, 400, "Content-Length must be a whole number of bytes")
                return
            if int(declared) > limit:
                await reply(send, 413, too_large)
                return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nothing to answer
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > limit:
                await reply(send, 413, too_large)
                return
        sent = [False]

        async def replay() -> dict[str, Any]:
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.inner(scope, replay, send)

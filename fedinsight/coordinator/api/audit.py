"""Every access is audited: one entry per request, committed *before* the response starts, so nothing is
disclosed that the log does not record — refusals (401, 403, 429) and unhandled errors included.

Routes and dependencies leave what the entry should say on ``request.state`` (``principal``, ``target``,
``refusal``, ``audit_detail``); the middleware reads it from the ASGI scope once the status is known.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi.concurrency import run_in_threadpool

from fedinsight.coordinator.anomaly import AccessMonitor
from fedinsight.coordinator.auth import Principal

log = logging.getLogger("fedinsight.api")
UNAUDITED = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect"}


class AuditWriter:
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
            except Exception:  # noqa: BLE001 - one entry may be bad: write them one by one, see below
                await self._one_by_one(batch)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def _one_by_one(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        """After a failed batch, append each entry alone: an entry the log refuses fails only its own request
        (which then is not answered), never the other requests that happened to share its batch."""
        for item, future in batch:
            try:
                await run_in_threadpool(self.audit.append_many, [item])
            except Exception as exc:  # noqa: BLE001 - handed to that request alone
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(None)

    async def record(self, scope: dict[str, Any], status: int, started: float) -> None:
        """Append the entry for the request in ``scope``, answered with ``status``."""
        st = scope.get("state") or {}
        who: Principal | None = st.get("principal")
        outcome = st.get("refusal") or ("ok" if status < 400 else "denied")
        detail: dict[str, Any] = {"status": status, "ms": round((time.perf_counter() - started) * 1000, 2)}
        if query := scope.get("query_string", b"").decode("latin-1"):
            detail["query"] = query[:500]
        if extra := st.get("audit_detail"):
            detail.update(extra)
        await self.append({"actor": who.name if who else "anonymous", "role": who.role.value if who else "",
                           "action": f"{scope['method']} {scope['path']}", "target": st.get("target", ""),
                           "outcome": outcome, "detail": detail})


class AuditEveryAccess:
    """Pure ASGI middleware (cheaper than ``@app.middleware``): one audit entry per request, committed
    *before* the response starts, so nothing is disclosed that the log does not record."""

    def __init__(self, inner: Any, writer: AuditWriter, monitor: AccessMonitor | None = None) -> None:
        self.inner = inner
        self.writer = writer
        self.monitor = monitor

    async def _observe(self, scope: dict[str, Any], message: dict[str, Any]) -> None:
        """Count the request for its token's access baseline (requests, records, insights, bytes served)."""
        st = scope.get("state") or {}
        who: Principal | None = st.get("principal")
        if self.monitor is None or who is None:
            return
        length = next((v for k, v in message.get("headers") or [] if k.lower() == b"content-length"), b"0")
        if self.monitor.observe(who.token_id, records=int(st.get("records", 0)),
                                nbytes=int(length) if length.isdigit() else 0,
                                insight_ids=tuple(st.get("insight_ids", ()))):
            try:
                await run_in_threadpool(self.monitor.flush)
            except Exception:  # noqa: BLE001 - counting must never fail the request it counts
                log.exception("the access monitor could not write its counts")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUDITED:
            await self.inner(scope, receive, send)
            return
        scope.setdefault("state", {})
        started, recorded = time.perf_counter(), [False]

        async def send_after_audit(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and not recorded[0]:
                recorded[0] = True
                await self.writer.record(scope, message["status"], started)
                await self._observe(scope, message)
            await send(message)

        try:
            await self.inner(scope, receive, send_after_audit)
        except Exception:
            if not recorded[0]:  # an unhandled error: the 500 is sent by the outer error middleware
                recorded[0] = True
                await self.writer.record(scope, 500, started)
            raise

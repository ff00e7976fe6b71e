"""``/session``: trade an API token and a second factor (a TOTP code or a recovery code) for a short-lived session
token. Admin and auditor tokens reach nothing else on their own (see :mod:`fedinsight.coordinator.mfa`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from fedinsight.coordinator.api.deps import principal, shared
from fedinsight.coordinator.api.schemas import SessionOut, errors
from fedinsight.coordinator.auth import Principal

router = APIRouter(tags=["session"])


@router.post("/session", response_model=SessionOut, status_code=201, responses=errors(403, 422))
async def open_session(request: Request,
                       x_totp: str | None = Header(None, max_length=16, description="The authenticator app's code"),
                       x_recovery_code: str | None = Header(None, max_length=32,
                                                            description="Or one unused recovery code"),
                       who: Principal = Depends(principal)) -> SessionOut:
    """Open a session with the API token (not a session token) and one second factor; few attempts per token."""
    ctx = shared(request)
    request.state.target = who.token_id
    if getattr(request.state, "session", False):
        raise HTTPException(403, "open a session with the API token itself, not with a session token")
    if (x_totp is None) == (x_recovery_code is None):
        raise HTTPException(422, "send exactly one of the X-TOTP and X-Recovery-Code headers")
    if not await run_in_threadpool(ctx.mfa.enrolled, who.token_id):
        raise HTTPException(403, "this token has no second factor yet: the operator runs "
                                 f"`fedinsight tokens mfa enrol {who.token_id}` and gives you its output")
    wait = await run_in_threadpool(ctx.mfa_attempts.take, who.token_id)
    if wait > 0:
        request.state.refusal = "second-factor-attempts"
        raise HTTPException(429, f"too many second-factor attempts; retry in {wait:.0f}s",
                            {"Retry-After": str(max(1, round(wait)))})
    if x_totp is not None:
        ok = await run_in_threadpool(ctx.mfa.verify, who.token_id, x_totp)
    else:
        ok = await run_in_threadpool(ctx.mfa.use_recovery_code, who.token_id, str(x_recovery_code))
        request.state.audit_detail = {"recovery_code": True}
    if not ok:
        request.state.refusal = "second-factor-refused"
        raise HTTPException(401, "wrong, expired or already used code", {"WWW-Authenticate": "Bearer"})
    token, expires = await run_in_threadpool(ctx.mfa.open_session, who.token_id, ctx.session_minutes)
    return SessionOut(token=token, expires_at=expires.isoformat() + "Z")

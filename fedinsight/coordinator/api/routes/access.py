"""``/alerts`` and ``/tokens/{id}/unlock``: the access monitor's alerts and lifting a token's lock, for admins
(through a session opened with a second factor, as every admin request), so an operator away from the coordinator
machine need not run ``fedinsight audit alerts`` / ``tokens unlock`` there. An unlock is audited like the CLI's."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from fedinsight.coordinator.api.deps import require, shared
from fedinsight.coordinator.api.schemas import AlertOut, UnlockOut, errors
from fedinsight.coordinator.auth import Permission, Principal

router = APIRouter(tags=["access"])
TOKEN_ID = r"^[0-9a-f]{16}$"


@router.get("/alerts", response_model=list[AlertOut], responses=errors(403, 422))
def list_alerts(request: Request, limit: int = Query(100, ge=1, le=1000),
                who: Principal = Depends(require(Permission.MANAGE_ACCESS))) -> list[AlertOut]:
    """The newest access alerts first (admins only); ``locked`` says whether the alert locked the token."""
    return [AlertOut(**a.as_dict()) for a in shared(request).monitor.alerts(limit)]


@router.post("/tokens/{token_id}/unlock", response_model=UnlockOut, responses=errors(403, 404, 422))
def unlock_token(request: Request, token_id: str = Path(..., pattern=TOKEN_ID, description="from GET /alerts"),
                 who: Principal = Depends(require(Permission.MANAGE_ACCESS))) -> UnlockOut:
    """Lift a token's lock (admins only; 404 when it is not locked). Other API workers see it within a second."""
    ctx = shared(request)
    request.state.target = token_id
    if not ctx.monitor.unlock(token_id):
        raise HTTPException(404, f"token {token_id} is not locked")
    ctx.state.audit.append(actor=who.name, role=who.role.value, action="token.unlock", target=token_id)
    return UnlockOut(token_id=token_id, unlocked=True)

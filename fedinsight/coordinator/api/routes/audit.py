"""``/audit``: the audit log and a check of its hash chain, for auditors only."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from fedinsight.coordinator.api.deps import require, shared
from fedinsight.coordinator.api.schemas import MAX_OFFSET, AuditEntryOut, AuditVerifyOut, errors
from fedinsight.coordinator.auth import Permission, Principal

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=list[AuditEntryOut], responses=errors(403, 422))
def read_audit(request: Request, since: int = Query(0, ge=0, le=MAX_OFFSET), limit: int = Query(100, ge=1, le=1000),
               actor: str | None = None,
               who: Principal = Depends(require(Permission.READ_AUDIT))) -> list[AuditEntryOut]:
    """Audit entries after sequence number ``since`` (auditors only)."""
    audit = shared(request).state.audit
    return [AuditEntryOut(**e.as_dict()) for e in audit.entries(since_seq=since, limit=limit, actor=actor)]


@router.get("/audit/verify", response_model=AuditVerifyOut, responses=errors(403))
def verify_audit(request: Request, who: Principal = Depends(require(Permission.READ_AUDIT))) -> AuditVerifyOut:
    """Re-check the whole hash chain (auditors only)."""
    result = shared(request).state.audit.verify()
    return AuditVerifyOut(ok=result.ok, entries=result.entries, head_hash=result.head_hash,
                          problems=result.problems)

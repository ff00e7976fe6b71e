"""``/budget``: how much privacy budget is left, in as much detail as the caller's role may see."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from fedinsight.coordinator.api.deps import require, shared
from fedinsight.coordinator.api.schemas import BudgetOut, PartnerBudget, errors
from fedinsight.coordinator.auth import Permission, Principal

router = APIRouter(tags=["budget"])


@router.get("/budget", response_model=BudgetOut, responses=errors(403))
async def budget(request: Request, who: Principal = Depends(require(Permission.READ_BUDGET))) -> BudgetOut:
    """Remaining privacy budget: per partner for admins/auditors, the federation's (tightest) for analysts,
    or only the bound partner's for an analyst token bound to one."""
    ledger = shared(request).ledger
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

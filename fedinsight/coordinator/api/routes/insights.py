"""``/insights``: what jobs released (noisy aggregates with their error bars, model summaries). Every record
read counts towards the token's bulk-read limit, so the store cannot be scraped at machine speed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from fedinsight.coordinator.api.deps import pull, require, shared
from fedinsight.coordinator.api.schemas import MAX_OFFSET, Insight, InsightPage, InsightSummary, errors
from fedinsight.coordinator.auth import Permission, Principal

router = APIRouter(tags=["insights"])


@router.get("/insights", response_model=InsightPage, responses=errors(403, 422))
async def list_insights(request: Request, limit: int = Query(20, ge=1, le=100),
                        offset: int = Query(0, ge=0, le=MAX_OFFSET),
                        who: Principal = Depends(require(Permission.READ_INSIGHTS))) -> InsightPage:
    """Released insights, newest first (summaries; each counts towards the bulk-read limit)."""
    items, total = shared(request).insights.page(limit, offset)
    await pull(request, who, len(items))
    return InsightPage(items=[InsightSummary(**i) for i in items], total=total, limit=limit, offset=offset)


@router.get("/insights/{insight_id}", response_model=Insight, responses=errors(403, 404))
async def read_insight(insight_id: str, request: Request,
                       who: Principal = Depends(require(Permission.READ_INSIGHTS))) -> Insight:
    """One released insight with its values and error bars (or a model summary)."""
    request.state.target = insight_id
    request.state.insight_ids = (insight_id,)
    await pull(request, who, 1)
    return Insight(**shared(request).insights.get(insight_id))

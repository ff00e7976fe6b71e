"""``/health``: the one endpoint without a token (and without an audit entry)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from fedinsight.coordinator.api.deps import shared
from fedinsight.coordinator.api.schemas import Health, errors
from fedinsight.core.version import __version__

router = APIRouter(tags=["meta"])


@router.get("/health", response_model=Health, responses=errors(public=True))
async def health(request: Request) -> Health:
    """Liveness: no token needed, no data returned."""
    return Health(status="ok", version=__version__, federation=shared(request).federation)

"""Released insights as the API reads them: summaries a page at a time, or one insight with its payload."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from fedinsight.coordinator.state import CoordinatorState
from fedinsight.core.errors import NotFoundError
from fedinsight.federation.store import InsightRow

MAX_ID = 2**63 - 1
"""Ids are 64-bit integers in the database: anything larger is no insight (a 404, never a driver error)."""


class InsightReader:
    """Reads the insight store's table with SQLAlchemy Core (the API's hottest path)."""

    def __init__(self, state: CoordinatorState) -> None:
        self.engine = state.insights.engine
        self.table = InsightRow.__table__

    @staticmethod
    def summary(row: Any) -> dict[str, Any]:
        return {"id": str(row.id), "job_id": row.batch_id, "name": row.name, "kind": row.kind,
                "epsilon": row.epsilon, "created_at": row.created_at.isoformat() + "Z"}

    def page(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.id, t.c.batch_id, t.c.name, t.c.kind, t.c.epsilon, t.c.created_at)
                                .order_by(t.c.id.desc()).limit(limit).offset(offset)).all()
            total = int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
        return [self.summary(r) for r in rows], total

    def get(self, insight_id: str) -> dict[str, Any]:
        row = None
        if insight_id.isascii() and insight_id.isdigit() and int(insight_id) <= MAX_ID:  # '¹'.isdigit() too
            with self.engine.connect() as conn:
                row = conn.execute(select(self.table).where(self.table.c.id == int(insight_id))).first()
        if row is None:
            raise NotFoundError(f"no insight '{insight_id}' (see GET /insights)")
        return {**self.summary(row), "payload": json.loads(row.result_json)}

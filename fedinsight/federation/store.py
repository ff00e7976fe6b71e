"""The insight store: every released insight, kept with its query, time, epsilon and requester.

Why: analysts come back to answers; the DPO asks who learned what, when, at what privacy cost. Only
released insights are stored -- the combined, noisy, suppressed output -- never a partner's input.
It lives in the same database as the privacy ledger (SQLite by default, any SQLAlchemy URL), so one
backup holds both the spending and what it bought.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedinsight.core.db import Base, create_tables, make_engine
from fedinsight.core.errors import InsightNotFoundError


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class InsightRow(Base):
    __tablename__ = "insights"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    query_json: Mapped[str] = mapped_column(Text)
    result_json: Mapped[str] = mapped_column(Text)
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    partners: Mapped[int] = mapped_column(Integer)
    suppressed_groups: Mapped[int] = mapped_column(Integer)
    requester: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)


@dataclass(frozen=True)
class StoredInsight:
    """One stored insight (``insight`` is the full released document)."""

    id: int
    batch_id: str
    name: str
    kind: str
    epsilon: float
    delta: float
    partners: int
    suppressed_groups: int
    requester: str
    created_at: datetime
    insight: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "batch_id": self.batch_id, "name": self.name, "kind": self.kind,
                "epsilon": self.epsilon, "delta": self.delta, "partners": self.partners,
                "suppressed_groups": self.suppressed_groups, "requester": self.requester,
                "created_at": self.created_at.isoformat(timespec="seconds"),
                "noise_model": self.insight.get("noise_model", "local")}  # stored before it was recorded: local


class InsightStore:
    """Released insights in the fedinsight database (``url``: any SQLAlchemy URL)."""

    def __init__(self, url: str | None = None) -> None:
        self.engine = make_engine(url)
        create_tables(self.engine, [InsightRow.__table__])

    def save(self, batch_id: str, insights: list[dict[str, Any]], *, requester: str) -> list[int]:
        """Store a batch's released insights in one transaction; returns their ids."""
        rows = [
            InsightRow(batch_id=batch_id, name=i["name"], kind=i["kind"], query_json=json.dumps(i["query"]),
                       result_json=json.dumps(i), epsilon=float(i["epsilon"]), delta=float(i["delta"]),
                       partners=int(i["partners"]), suppressed_groups=int(i["suppressed_groups"]),
                       requester=requester)
            for i in insights
        ]
        with Session(self.engine) as session, session.begin():
            session.add_all(rows)
            session.flush()
            return [r.id for r in rows]

    @staticmethod
    def _stored(row: InsightRow) -> StoredInsight:
        return StoredInsight(row.id, row.batch_id, row.name, row.kind, row.epsilon, row.delta, row.partners,
                             row.suppressed_groups, row.requester, row.created_at, json.loads(row.result_json))

    def list(self, *, batch_id: str | None = None, name: str | None = None, limit: int = 100) -> list[StoredInsight]:
        """Most recent first."""
        query = select(InsightRow).order_by(InsightRow.id.desc()).limit(limit)
        if batch_id is not None:
            query = query.where(InsightRow.batch_id == batch_id)
        if name is not None:
            query = query.where(InsightRow.name == name)
        with Session(self.engine) as session:
            return [self._stored(r) for r in session.scalars(query)]

    def get(self, ref: int | str) -> StoredInsight:
        """By id, or the latest insight with that name."""
        with Session(self.engine) as session:
            if isinstance(ref, int) or str(ref).isdigit():
                row = session.get(InsightRow, int(ref))
            else:
                row = session.scalars(select(InsightRow).where(InsightRow.name == ref)
                                      .order_by(InsightRow.id.desc()).limit(1)).first()
            if row is None:
                count = session.query(InsightRow).count()
                raise InsightNotFoundError(
                    f"no insight '{ref}' in the store ({count} stored; `fedinsight insights list` shows them)")
            return self._stored(row)

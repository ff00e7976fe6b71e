"""What the insights API serves: results that jobs published, already de-identified and noised.

The store holds only releases — noisy aggregates with their error bars, model summaries — never a
partner's rows or a single partner's update (the coordinator has neither). Jobs publish here from the
ServerApp process; the API reads. Each record names the job that produced it and the ε it cost.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Float, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedinsight.db import Base, make_engine
from fedinsight.errors import NotFoundError


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class PublishedInsightRow(Base):
    __tablename__ = "published_insights"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(32))
    epsilon: Mapped[float | None] = mapped_column(Float, nullable=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)


@dataclass(frozen=True)
class PublishedInsight:
    id: str
    job_id: str
    name: str
    kind: str
    epsilon: float | None
    payload: dict[str, Any]
    created_at: datetime

    def as_dict(self, *, with_payload: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "job_id": self.job_id, "name": self.name, "kind": self.kind,
                               "epsilon": self.epsilon, "created_at": self.created_at.isoformat() + "Z"}
        if with_payload:
            out["payload"] = self.payload
        return out


class PublishedInsights:
    """Append-only store of published results (``url``: SQLAlchemy URL, default ``$FEDINSIGHT_DB_URL``)."""

    def __init__(self, url: str | None) -> None:
        self.engine = make_engine(url)
        from fedinsight.privacy.audit import enable_sqlite_wal

        enable_sqlite_wal(self.engine)
        Base.metadata.create_all(self.engine, tables=[PublishedInsightRow.__table__])

    def publish(self, *, job_id: str, name: str, kind: str, payload: dict[str, Any], epsilon: float | None = None
                ) -> str:
        insight_id = secrets.token_hex(8)
        row = PublishedInsightRow(id=insight_id, job_id=job_id, name=name, kind=kind, epsilon=epsilon,
                                  payload=json.dumps(payload, sort_keys=True, default=str), created_at=_utcnow())
        with Session(self.engine) as session, session.begin():
            session.add(row)
        return insight_id

    @staticmethod
    def _to(row: Any) -> PublishedInsight:
        return PublishedInsight(row.id, row.job_id, row.name, row.kind, row.epsilon, json.loads(row.payload),
                                row.created_at)

    # Reads use SQLAlchemy Core: they run once per API request.
    def list(self, *, limit: int = 50, offset: int = 0, job_id: str | None = None) -> list[PublishedInsight]:
        t = PublishedInsightRow.__table__
        query = select(t).order_by(t.c.created_at.desc(), t.c.id).limit(limit).offset(offset)
        if job_id is not None:
            query = query.where(t.c.job_id == job_id)
        with self.engine.connect() as conn:
            return [self._to(r) for r in conn.execute(query)]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(PublishedInsightRow.__table__)).scalar() or 0)

    def get(self, insight_id: str) -> PublishedInsight:
        t = PublishedInsightRow.__table__
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == insight_id)).first()
        if row is None:
            raise NotFoundError(f"no published insight with id '{insight_id}'")
        return self._to(row)

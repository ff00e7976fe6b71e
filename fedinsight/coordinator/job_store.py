"""The coordinator's job records (table ``coordinator_jobs``): what was submitted, by whom, and how it ended.

A job is ``submitted``, then ``running`` (the ServerApp marks it), then ``completed`` or ``failed`` -- the first
outcome wins. When the coordinator restarts, jobs still marked running are marked failed (their Flower run
died with the old SuperLink), never silently dropped. Submitting and following jobs is
:mod:`fedinsight.coordinator.jobs`.

A job the recalibration schedule submits also takes its period in ``coordinator_schedule_periods``, whose primary
key is (task, the period's first day), in the same transaction as the job row: of two scheduler runs that both found
a period due, exactly one records a job and the other gets :class:`PeriodTaken` (nothing recorded, nothing sent).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Index, Select, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedinsight.core.db import Base, create_tables, make_engine, write_locked
from fedinsight.core.errors import ConfigError, NotFoundError
from fedinsight.privacy.audit import enable_sqlite_wal

STATUSES = ("submitted", "running", "completed", "failed")
UNFINISHED = ("submitted", "running")


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class JobRow(Base):
    __tablename__ = "coordinator_jobs"
    # The scheduler looks up its own earlier jobs of a task on every run (:meth:`JobStore.by_requester`): without
    # this index that is a scan of every job the coordinator ever recorded.
    __table_args__ = (Index("ix_coordinator_jobs_task_requester", "task", "requester"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    federation: Mapped[str] = mapped_column(String(64))
    requester: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), index=True)
    flwr_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    run_config: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class SchedulePeriodRow(Base):
    """The job that holds one scheduled period: the unique key that makes "due, then submit" atomic."""

    __tablename__ = "coordinator_schedule_periods"

    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_start: Mapped[str] = mapped_column(String(10), primary_key=True)  # ISO date of the period's first day
    job_id: Mapped[str] = mapped_column(String(32))


class PeriodTaken(Exception):  # noqa: N818 - a normal outcome of a race, not an error the user fixes
    """Another scheduler run recorded a job for this (task, period) first; this one recorded nothing."""


@dataclass(frozen=True)
class Job:
    id: str
    task: str
    federation: str
    requester: str
    status: str
    flwr_run_id: str | None
    run_config: dict[str, Any]
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED

    def as_dict(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat() + "Z"

        return {"id": self.id, "task": self.task, "federation": self.federation, "requester": self.requester,
                "status": self.status, "flwr_run_id": self.flwr_run_id, "run_config": self.run_config,
                "error": self.error, "created_at": iso(self.created_at), "started_at": iso(self.started_at),
                "finished_at": iso(self.finished_at)}


def by_requester_query(task: str, requester: str) -> Select[tuple[JobRow]]:
    """The jobs of ``task`` submitted by ``requester``, oldest first (what the (task, requester) index serves)."""
    return select(JobRow).where(JobRow.task == task, JobRow.requester == requester).order_by(JobRow.created_at)


class JobStore:
    """The job table (``url``: SQLAlchemy URL)."""

    def __init__(self, url: str | None) -> None:
        self.engine = make_engine(url)
        enable_sqlite_wal(self.engine)
        create_tables(self.engine, [JobRow.__table__, SchedulePeriodRow.__table__])
        for index in JobRow.__table__.indexes:  # a job table created before an index existed gets it too
            index.create(write_locked(self.engine), checkfirst=True)  # two stores opening at once: one creates it

    @staticmethod
    def _to(r: JobRow) -> Job:
        return Job(r.id, r.task, r.federation, r.requester, r.status, r.flwr_run_id, json.loads(r.run_config),
                   r.error, r.created_at, r.started_at, r.finished_at)

    def create(self, *, task: str, federation: str, run_config: dict[str, Any], requester: str,
               job_id: str | None = None, schedule_period: str | None = None) -> Job:
        """Record a submitted job; with ``schedule_period`` (the ISO first day of a scheduled period) the job also
        takes that (task, period) in the same transaction, or raises :class:`PeriodTaken` and records nothing."""
        job_id = job_id or f"job-{secrets.token_hex(6)}"
        try:
            with Session(self.engine) as session, session.begin():
                session.add(JobRow(id=job_id, task=task, federation=federation, requester=requester,
                                   status="submitted", run_config=json.dumps(run_config, sort_keys=True), error="",
                                   created_at=_utcnow()))
                if schedule_period is not None:
                    session.flush()  # the job row first: the period row names it
                    session.add(SchedulePeriodRow(task=task, period_start=schedule_period, job_id=job_id))
        except IntegrityError as exc:
            if schedule_period is not None and self.period_job(task, schedule_period) is not None:
                raise PeriodTaken(f"{task} for the period from {schedule_period} was submitted by another run") \
                    from exc
            raise
        return self.get(job_id)

    def period_job(self, task: str, period_start: str) -> str | None:
        """The id of the job that holds a scheduled period, or None (a primary-key lookup, however many jobs)."""
        with Session(self.engine) as session:
            row = session.get(SchedulePeriodRow, (task, period_start))
            return None if row is None else row.job_id

    def by_requester(self, task: str, requester: str) -> list[Job]:
        """Every job of ``task`` submitted by ``requester`` (the scheduler's own jobs: one per period)."""
        with Session(self.engine) as session:
            return [self._to(r) for r in session.scalars(by_requester_query(task, requester))]

    def get(self, job_id: str) -> Job:
        with Session(self.engine) as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise NotFoundError(f"no job '{job_id}' (see `fedinsight job list`)")
            return self._to(row)

    def list(self, *, limit: int = 50, status: str | None = None) -> list[Job]:
        with Session(self.engine) as session:
            query = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
            if status is not None:
                query = query.where(JobRow.status == status)
            return [self._to(r) for r in session.scalars(query)]

    def unfinished(self) -> list[Job]:
        with Session(self.engine) as session:
            return [self._to(r) for r in session.scalars(select(JobRow).where(JobRow.status.in_(UNFINISHED)))]

    def set_run_id(self, job_id: str, run_id: str) -> None:
        with Session(self.engine) as session, session.begin():
            self._row(session, job_id).flwr_run_id = run_id

    def mark(self, job_id: str, status: str, *, error: str = "") -> Job:
        """Move a job to ``status``; a finished job stays finished (first outcome wins)."""
        if status not in STATUSES:
            raise ConfigError(f"unknown job status '{status}'")
        with Session(self.engine) as session, session.begin():
            row = self._row(session, job_id)
            if row.status not in UNFINISHED:
                return self._to(row)
            row.status = status
            if status == "running" and row.started_at is None:
                row.started_at = _utcnow()
            if status in ("completed", "failed"):
                row.finished_at = _utcnow()
                row.error = error[:4000]
        return self.get(job_id)

    @staticmethod
    def _row(session: Session, job_id: str) -> JobRow:
        row = session.get(JobRow, job_id)
        if row is None:
            raise NotFoundError(f"no job '{job_id}' (see `fedinsight job list`)")
        return row

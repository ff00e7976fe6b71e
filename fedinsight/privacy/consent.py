"""Consent per purpose, and the partner's erasure register ("forget these customers").

Purposes: a customer may allow *analytics* (aggregate insights), *training* (propensity/LTV models),
*recommendation* (personal recommendations) and *marketing* (being contacted with offers: target lists)
separately. A customers table holds either one
``consent`` flag for all purposes or ``consent_<purpose>`` flags that override it. A customer with
no consent information (no column, no customers table, or an empty cell) is treated as the policy's
``missing`` setting says -- ``deny`` unless the partner declares otherwise.

Erasure: ``fedinsight partner forget --customers FILE`` records keyed tokens of the customers in
the register (under *every* key of the tokenization ring, so a later key rotation does not forget
the forgetting); every later load drops them from every table, for every purpose. The register holds
tokens only -- never raw ids -- and a list of the partner's stored artifacts (checkpoints, embeddings,
feature caches, scores) with their creation time, so a request can say which ones predate it and
must be retrained.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, func, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedinsight.core.db import Base, create_tables, make_engine, write_locked
from fedinsight.core.errors import ConfigError, DataValidationError, Problem

DATA_PURPOSES: tuple[str, ...] = ("analytics", "training", "recommendation")
"""What tasks compute for (each task declares one); ``None`` as a purpose means all of these at once."""
PURPOSES: tuple[str, ...] = (*DATA_PURPOSES, "marketing")
"""Every consent purpose. ``marketing`` is contacting a customer with offers: no task computes for it, a target
list (``partner export targets --purpose marketing``) asks for it, with ``consent_marketing`` or ``consent``."""
MISSING_CONSENT = ("deny", "allow")
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def resolve_purpose(purpose: str | None = None) -> str | None:
    """The purpose named (checked), or ``None``: every purpose at once (the strictest). Which purpose a task
    serves is the task's own declaration (its contract's ``purpose``), never guessed here."""
    if purpose is not None and purpose not in PURPOSES:
        raise ConfigError(f"unknown purpose '{purpose}', expected one of {', '.join(PURPOSES)}")
    return purpose


def _flags(values: pd.Series, column: str) -> pd.Series:
    """A consent column as nullable booleans; text like yes/no/1/0 is accepted, anything else refused."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    text = values.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(_TRUE).fillna(False).to_numpy(dtype=bool)] = True
    out[text.isin(_FALSE).fillna(False).to_numpy(dtype=bool)] = False
    bad = values.notna() & text.ne("") & out.isna()
    if bad.any():
        rows = tuple(int(i) + 1 for i in np.flatnonzero(bad.to_numpy(dtype=bool))[:10])
        raise DataValidationError(Problem("customers", "expected true/false consent flags", column=column, rows=rows))
    return out


def consent_flags(values: pd.Series, column: str) -> pd.Series:
    """A consent column as nullable booleans, read as :func:`consent_mask` reads it (for engines that hold raw
    text)."""
    return _flags(values, column)


def consent_mask(
    customers: pd.DataFrame | None,
    purpose: str | None,
    *,
    column: str = "consent",
    purpose_columns: Mapping[str, str] | None = None,
    missing: str = "deny",
) -> pd.Series | None:
    """Per customer row: may this customer's data be used for ``purpose``? (``None``: all purposes).

    Returns ``None`` when there is no customers table; then ``missing`` decides for everyone.
    """
    if missing not in MISSING_CONSENT:
        raise ConfigError(f"consent 'missing' must be deny or allow (got '{missing}')")
    if customers is None:
        return None
    default = missing == "allow"
    purposes = DATA_PURPOSES if purpose is None else (purpose,)
    allowed = pd.Series(True, index=customers.index)
    general = _flags(customers[column], column) if column in customers.columns else None
    for p in purposes:
        specific = (purpose_columns or {}).get(p, f"{column}_{p}")
        flags = _flags(customers[specific], specific) if specific in customers.columns else None
        if flags is None:
            flags = general
        if flags is None:
            flags = pd.Series(default, index=customers.index, dtype="boolean")
        elif general is not None and flags is not general:
            flags = flags.fillna(general)
        allowed &= flags.fillna(default).astype(bool)
    return allowed


# --- the register -------------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ErasureRow(Base):
    __tablename__ = "partner_erasures"
    __table_args__ = (UniqueConstraint("key_id", "token"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    token: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)


class ErasureRequestRow(Base):
    __tablename__ = "partner_erasure_requests"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customers: Mapped[int] = mapped_column(Integer)
    new_customers: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)


class ArtifactRow(Base):
    __tablename__ = "partner_artifacts"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str] = mapped_column(String(128), default="")
    purpose: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)


@dataclass(frozen=True)
class ErasureReceipt:
    """What one ``forget`` recorded: how many customers, how many were not already forgotten."""

    request_id: str
    customers: int
    new_customers: int
    requested_at: datetime
    stale_artifacts: tuple[Artifact, ...]


@dataclass(frozen=True)
class Artifact:
    """A stored artifact derived from customer data."""

    name: str
    kind: str
    path: str
    job_id: str
    purpose: str
    created_at: datetime


class ErasureRegister:
    """The partner's persistent erasure register and artifact list (SQLAlchemy; SQLite by default)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._writer = write_locked(self.engine)
        create_tables(self.engine, [ErasureRow.__table__, ErasureRequestRow.__table__, ArtifactRow.__table__])

    def record(self, tokens_by_key: Mapping[str, Sequence[str]], *, note: str = "") -> ErasureReceipt:
        """Record one erasure request.

        ``tokens_by_key``: for each ring key id, the tokens of the same customers in the same order.
        A customer is *new* unless any key already has it in the register.
        """
        lengths = {len(t) for t in tokens_by_key.values()}
        if len(lengths) > 1:
            raise ConfigError("erasure tokens must list the same customers under every key")
        request_id = f"er-{uuid.uuid4().hex[:12]}"
        now = _utcnow()
        first = np.asarray(next(iter(tokens_by_key.values())) if tokens_by_key else [], dtype=object)
        unique_at = np.sort(np.unique(first.astype(str), return_index=True)[1]) if len(first) else np.array([], int)
        aligned = {k: [str(t[i]) for i in unique_at] for k, t in tokens_by_key.items()}
        distinct = len(unique_at)
        with Session(self._writer) as session, session.begin():
            seen = np.zeros(distinct, dtype=bool)
            for key_id, tokens in aligned.items():
                before = set(self._tokens(session, key_id))
                seen |= np.fromiter((t in before for t in tokens), dtype=bool, count=distinct)
                fresh = [t for t in tokens if t not in before]
                for start in range(0, len(fresh), 1_000):
                    rows = [{"request_id": request_id, "key_id": key_id, "token": t, "requested_at": now}
                            for t in fresh[start:start + 1_000]]
                    session.execute(insert(ErasureRow), rows)
            new = int((~seen).sum())
            session.add(ErasureRequestRow(request_id=request_id, customers=distinct, new_customers=new, note=note,
                                          requested_at=now))
        return ErasureReceipt(request_id, distinct, new, now, tuple(self.artifacts_before(now)))

    @staticmethod
    def _tokens(session: Session, key_id: str) -> Iterable[str]:
        return session.scalars(select(ErasureRow.token).where(ErasureRow.key_id == key_id))

    def erased_tokens(self, key_id: str) -> set[str]:
        """Tokens (under ``key_id``) of every customer ever forgotten."""
        with Session(self.engine) as session:
            return set(self._tokens(session, key_id))

    def key_ids(self) -> set[str]:
        """Key ids that register entries were made with (each must stay in the ring)."""
        with Session(self.engine) as session:
            return set(session.scalars(select(ErasureRow.key_id).distinct()))

    def count(self) -> int:
        """Number of customers forgotten so far (each counted once, when first forgotten)."""
        with Session(self.engine) as session:
            return int(session.scalar(select(func.coalesce(func.sum(ErasureRequestRow.new_customers), 0))) or 0)

    def last_request_at(self) -> datetime | None:
        with Session(self.engine) as session:
            return session.scalar(select(func.max(ErasureRequestRow.requested_at)))

    # artifacts
    def register_artifact(self, name: str, kind: str, path: str, *, job_id: str = "", purpose: str = "") -> None:
        """Record (or refresh) a stored artifact; re-saving an artifact counts as retraining it."""
        with Session(self._writer) as session, session.begin():
            row = session.get(ArtifactRow, name)
            if row is None:
                session.add(ArtifactRow(name=name, kind=kind, path=path, job_id=job_id, purpose=purpose,
                                        created_at=_utcnow()))
            else:
                row.kind, row.path, row.job_id, row.purpose, row.created_at = kind, path, job_id, purpose, _utcnow()

    def artifacts(self) -> list[Artifact]:
        with Session(self.engine) as session:
            return [Artifact(r.name, r.kind, r.path, r.job_id, r.purpose, r.created_at)
                    for r in session.scalars(select(ArtifactRow).order_by(ArtifactRow.created_at, ArtifactRow.name))]

    def artifacts_before(self, when: datetime | None = None) -> list[Artifact]:
        """Artifacts made before ``when`` (default: the latest erasure request): they must be retrained."""
        when = when or self.last_request_at()
        if when is None:
            return []
        return [a for a in self.artifacts() if a.created_at <= when]


_REGISTERS: dict[str, ErasureRegister] = {}


def erasure_register(url: str) -> ErasureRegister:
    """One register (and one connection pool) per database per process: jobs load data every round.

    A SQLite file that disappeared (a partner reset its state folder) gets a fresh register.
    """
    register = _REGISTERS.get(url)
    path = url.split("///", 1)[-1] if url.startswith("sqlite") else ""
    if register is None or (path and path != ":memory:" and not Path(path).exists()):
        if register is not None:
            register.engine.dispose()
        register = _REGISTERS[url] = ErasureRegister(url)
    return register

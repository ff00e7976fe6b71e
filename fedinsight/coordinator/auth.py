"""API tokens and roles for the insights API.

Tokens look like ``fit_<id>_<secret>``. Only ``HMAC-SHA256(pepper, secret)`` is stored (the pepper is a
0600 key file beside the database), so a leaked database does not leak usable tokens; the ``id`` part
finds the row, and the digest is compared in constant time. Revocation takes effect within a second (the API
remembers a verified token for one second; the store itself refuses it immediately).

Roles, least privilege (see :data:`PERMISSIONS`):

* ``analyst`` — read published insights, list the query catalogue, submit catalogue queries, read the
  remaining budget of the federation (or, if the token is bound to a partner, of that partner only);
* ``auditor`` — read and verify the audit log, read every partner's budget and the job list; cannot read
  insights or submit queries (auditing who saw what does not need seeing it);
* ``admin`` — everything an analyst can, plus per-partner budgets and jobs; not the audit log
  (separation of duties: the people who run jobs do not curate the record of them).

Nobody can read partner-level data: the coordinator holds none, and no endpoint exists for it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives import constant_time, hashes, hmac
from sqlalchemy import DateTime, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedinsight.core.db import Base, create_tables, make_engine
from fedinsight.core.errors import ConfigError, NotFoundError
from fedinsight.privacy.audit import enable_sqlite_wal

TOKEN_PREFIX = "fit"


class Role(StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    AUDITOR = "auditor"


class Permission(StrEnum):
    READ_INSIGHTS = "insights:read"
    SUBMIT_QUERY = "queries:submit"
    READ_BUDGET = "budget:read"
    READ_ALL_BUDGETS = "budget:read-all"
    READ_JOBS = "jobs:read"
    READ_AUDIT = "audit:read"
    MANAGE_ACCESS = "access:manage"  # list access alerts, lift token locks


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ANALYST: frozenset({Permission.READ_INSIGHTS, Permission.SUBMIT_QUERY, Permission.READ_BUDGET}),
    Role.AUDITOR: frozenset({Permission.READ_AUDIT, Permission.READ_BUDGET, Permission.READ_ALL_BUDGETS,
                             Permission.READ_JOBS}),
    Role.ADMIN: frozenset({Permission.READ_INSIGHTS, Permission.SUBMIT_QUERY, Permission.READ_BUDGET,
                           Permission.READ_ALL_BUDGETS, Permission.READ_JOBS, Permission.MANAGE_ACCESS}),
}


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    role: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id and name, its role, and the partner it is bound to (if any)."""

    token_id: str
    name: str
    role: Role
    partner_id: str | None = None

    def can(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    role: str
    partner_id: str | None
    created_at: datetime
    revoked_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "role": self.role, "partner": self.partner_id,
                "created_at": self.created_at.isoformat() + "Z",
                "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat() + "Z"}


class TokenStore:
    """Create, revoke and check API tokens. ``pepper``: the HMAC key (see ``audit.load_or_create_key``)."""

    def __init__(self, url: str | None, pepper: bytes) -> None:
        if len(pepper) < 32:
            raise ConfigError("the token pepper must be at least 32 bytes")
        self._pepper = pepper
        self.engine = make_engine(url)
        enable_sqlite_wal(self.engine)
        create_tables(self.engine, [ApiTokenRow.__table__])

    def _digest(self, secret: str) -> bytes:
        mac = hmac.HMAC(self._pepper, hashes.SHA256())
        mac.update(secret.encode())
        return mac.finalize()

    def create(self, name: str, role: str, *, partner_id: str | None = None) -> tuple[str, TokenInfo]:
        """A new token (the only time its secret is shown) and what is stored about it."""
        try:
            role_ = Role(role)
        except ValueError:
            raise ConfigError(f"unknown role '{role}' (use one of: {', '.join(r.value for r in Role)})") from None
        if not name or len(name) > 128:
            raise ConfigError("a token needs a name of 1-128 characters (who or what uses it)")
        if partner_id is not None and role_ is not Role.ANALYST:
            raise ConfigError("only analyst tokens can be bound to a partner (--partner)")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        row = ApiTokenRow(id=token_id, name=name, role=role_.value, partner_id=partner_id,
                          digest=self._digest(secret).hex(), created_at=_utcnow())
        with Session(self.engine) as session, session.begin():
            session.add(row)
        return f"{TOKEN_PREFIX}_{token_id}_{secret}", self.info(token_id)

    def info(self, token_id: str) -> TokenInfo:
        with Session(self.engine) as session:
            row = session.get(ApiTokenRow, token_id)
            if row is None:
                raise NotFoundError(f"no API token with id '{token_id}' (see `fedinsight tokens list`)")
            return TokenInfo(row.id, row.name, row.role, row.partner_id, row.created_at, row.revoked_at)

    def list_tokens(self) -> list[TokenInfo]:
        with Session(self.engine) as session:
            return [TokenInfo(r.id, r.name, r.role, r.partner_id, r.created_at, r.revoked_at)
                    for r in session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.created_at))]

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke by id (idempotent); the token stops working on its next request."""
        with Session(self.engine) as session, session.begin():
            row = session.get(ApiTokenRow, token_id)
            if row is None:
                raise NotFoundError(f"no API token with id '{token_id}' (see `fedinsight tokens list`)")
            if row.revoked_at is None:
                row.revoked_at = _utcnow()
        return self.info(token_id)

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal for a presented token, or None (unknown, malformed, revoked or wrong secret)."""
        if not token:
            return None
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 16:
            return None
        table = ApiTokenRow.__table__
        with self.engine.connect() as conn:  # Core, not the ORM: once per API request
            row = conn.execute(select(table.c.name, table.c.role, table.c.partner_id, table.c.digest,
                                      table.c.revoked_at).where(table.c.id == parts[1])).first()
        if row is None:
            # Same work as a hit, so timing does not reveal which ids exist.
            constant_time.bytes_eq(self._digest(parts[2]), bytes(32))
            return None
        ok = constant_time.bytes_eq(self._digest(parts[2]), bytes.fromhex(row.digest))
        if not ok or row.revoked_at is not None:
            return None
        return Principal(parts[1], row.name, Role(row.role), row.partner_id)


    def principal_of(self, token_id: str) -> Principal | None:
        """The principal of a token that is still valid, by id (for a session opened with it)."""
        table = ApiTokenRow.__table__
        with self.engine.connect() as conn:
            row = conn.execute(select(table.c.name, table.c.role, table.c.partner_id, table.c.revoked_at)
                               .where(table.c.id == token_id)).first()
        if row is None or row.revoked_at is not None:
            return None
        return Principal(token_id, row.name, Role(row.role), row.partner_id)


def token_pepper_path(state_dir: Path) -> Path:
    return Path(state_dir) / "keys" / "api-token.key"


def audit_key_path(state_dir: Path) -> Path:
    return Path(state_dir) / "keys" / "audit.key"

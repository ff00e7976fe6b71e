"""A hash-chained, append-only audit log in the database: who did what, when, with what outcome and ε.

Why a chain and why keyed: each entry's ``hash`` is an HMAC-SHA256 (key held in a 0600 file beside
the database, not in it) over the previous entry's hash and the entry's own fields. Editing any field
of any entry breaks that entry's MAC; deleting an entry breaks the sequence and the next entry's
``prev_hash``; deleting the newest entries is caught by the MAC'd head record. Someone who can write
to the database but cannot read the key file cannot forge a consistent chain. (Restoring an entire
older copy of the database *and* head is a rollback only an external anchor catches: ``verify``
prints the head hash so operators can record it elsewhere.)

Appends take the database write lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL row lock on the head), so
the API process, the CLI and the ServerApp can all append without forking the chain.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, hmac
from sqlalchemy import DateTime, Float, Integer, String, Text, event, insert, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedinsight.core.db import Base, create_tables, make_engine, write_locked
from fedinsight.core.errors import ConfigError, StateIntegrityError
from fedinsight.core.files import write_private, write_private_atomic

GENESIS = "0" * 64
KEY_BYTES = 32
MAX_DETAIL_BYTES = 4096
"""A detail larger than this (e.g. a request body's filters) is kept as its size and SHA-256 only: the log
records that something was asked without storing whatever a caller sent, and one request cannot bloat it."""
LIMITS = {"actor": 128, "role": 32, "action": 128, "target": 512, "outcome": 64}
"""Column sizes: fields are cut to them before the append (PostgreSQL refuses longer values, SQLite does not),
so an entry for an odd request (a 1,000-character path) is written like any other and fails nobody's batch."""


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class AuditRow(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(64))
    epsilon: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True)
class AuditEntry:
    """One access or job, as recorded."""

    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    outcome: str
    epsilon: float | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at.isoformat() + "Z", "actor": self.actor, "role": self.role,
                "action": self.action, "target": self.target, "outcome": self.outcome, "epsilon": self.epsilon,
                "detail": self.detail, "hash": self.hash}


@dataclass
class VerifyResult:
    """What ``verify`` found: ok only if every entry and the head check out."""

    entries: int
    head_hash: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_or_create_key(path: Path, *, create: bool = True) -> bytes:
    """The audit MAC key: read it, or create it (0600) on first use (``create``; else a missing key is an error:
    a log with history must never be verified against a new key)."""
    path = Path(path)
    if not path.is_file() and not create:
        raise StateIntegrityError(f"the audit key {path} is missing but the audit log has history: restore the key "
                                  "from a backup (a new key would report every entry as edited)")
    if path.is_file():
        key = path.read_bytes()
        if len(key) < KEY_BYTES:
            raise ConfigError(f"{path} holds a key shorter than {KEY_BYTES} bytes")
        return key
    with contextlib.suppress(ConfigError):  # another process may have created it first
        write_private(path, os.urandom(KEY_BYTES))
    return path.read_bytes()


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded_detail(detail: dict[str, Any]) -> str:
    """``detail`` as canonical JSON, or its size and digest when it is larger than :data:`MAX_DETAIL_BYTES`."""
    text = json.dumps(detail, sort_keys=True, default=str)
    raw = text.encode()
    if len(raw) <= MAX_DETAIL_BYTES:
        return text
    kept = {k: detail[k] for k in ("status", "ms", "job", "epsilon") if k in detail and len(str(detail[k])) < 64}
    return json.dumps({**kept, "truncated": True, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                       "keys": sorted(str(k)[:64] for k in detail)[:20]}, sort_keys=True, default=str)


def _canonical(seq: int, at: datetime, actor: str, role: str, action: str, target: str, outcome: str,
               epsilon: float | None, detail: str) -> bytes:
    eps = None if epsilon is None else repr(float(epsilon))
    return json.dumps([seq, at.isoformat(timespec="microseconds"), actor, role, action, target, outcome, eps, detail],
                      separators=(",", ":"), ensure_ascii=True).encode()


def enable_sqlite_wal(engine: Any) -> None:
    """WAL + synchronous=NORMAL on SQLite: readers never block the writer, commits stay sub-millisecond."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


class AuditLog:
    """Append and verify the chained log. ``key``: the MAC key (see :func:`load_or_create_key`)."""

    def __init__(self, url: str | None, key: bytes, anchor: Path | None = None) -> None:
        if len(key) < KEY_BYTES:
            raise ConfigError(f"the audit key must be at least {KEY_BYTES} bytes")
        self._key = key
        self.anchor = Path(anchor) if anchor is not None else None
        self.engine = make_engine(url)
        enable_sqlite_wal(self.engine)
        self._writer = write_locked(self.engine)
        create_tables(self.engine, [AuditRow.__table__, AuditHeadRow.__table__])

    def _mac(self, *parts: bytes) -> str:
        mac = hmac.HMAC(self._key, hashes.SHA256())
        for part in parts:
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.finalize().hex()

    def _entry_hash(self, prev_hash: str, canonical: bytes) -> str:
        return self._mac(b"entry", prev_hash.encode(), canonical)

    def _head_mac(self, seq: int, head_hash: str) -> str:
        return self._mac(b"head", str(seq).encode(), head_hash.encode())

    def append(
        self, *, actor: str, action: str, target: str = "", outcome: str = "ok", role: str = "",
        epsilon: float | None = None, detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Record one entry at the end of the chain (atomically with the head)."""
        return self.append_many([{"actor": actor, "action": action, "target": target, "outcome": outcome,
                                  "role": role, "epsilon": epsilon, "detail": detail}])[0]

    def append_many(self, items: list[dict[str, Any]]) -> list[AuditEntry]:
        """Record several entries, in order, in one transaction (the API batches concurrent requests)."""
        rows: list[dict[str, Any]] = []
        for item in items:
            epsilon = item.get("epsilon")
            if epsilon is not None and not math.isfinite(epsilon):
                raise ConfigError(f"audit epsilon must be finite (got {epsilon})")
            fields = {"actor": item["actor"], "role": item.get("role", ""), "action": item["action"],
                      "target": item.get("target", ""), "outcome": item.get("outcome", "ok")}
            rows.append({**{k: _cut(str(v), LIMITS[k]) for k, v in fields.items()}, "epsilon": epsilon,
                         "detail": _bounded_detail(item.get("detail") or {})})
        if not rows:
            return []
        head_t, log_t = AuditHeadRow.__table__, AuditRow.__table__
        entries: list[AuditEntry] = []
        # SQLAlchemy Core, not the ORM: this runs for every API request.
        with self._writer.begin() as conn:
            head = conn.execute(select(head_t.c.seq, head_t.c.hash).where(head_t.c.id == 1).with_for_update()).first()
            seq, prev = (head.seq, head.hash) if head is not None else (0, GENESIS)
            for row in rows:
                seq += 1
                at = _utcnow()
                digest = self._entry_hash(prev, _canonical(seq, at, row["actor"], row["role"], row["action"],
                                                           row["target"], row["outcome"], row["epsilon"],
                                                           row["detail"]))
                row.update(seq=seq, at=at, prev_hash=prev, hash=digest)
                entries.append(AuditEntry(seq, at, row["actor"], row["role"], row["action"], row["target"],
                                          row["outcome"], row["epsilon"], json.loads(row["detail"]), prev, digest))
                prev = digest
            conn.execute(insert(log_t), rows)
            values = {"seq": seq, "hash": prev, "mac": self._head_mac(seq, prev)}
            if head is None:
                conn.execute(insert(head_t).values(id=1, **values))
            else:
                conn.execute(update(head_t).where(head_t.c.id == 1).values(**values))
            if self.anchor is not None:  # under the write lock: anchors of concurrent appends never go backwards
                write_private_atomic(self.anchor, json.dumps(values).encode())
        return entries

    def head(self) -> tuple[int, str]:
        """The database's head record: (last sequence number, its hash); (0, genesis) for an empty log."""
        with self.engine.connect() as conn:
            row = conn.execute(select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == 1)).first()
        return (int(row.seq), str(row.hash)) if row is not None else (0, GENESIS)

    def read_anchor(self) -> dict[str, Any] | None:
        """The head recorded outside the database (``None`` without an anchor file); a ``problem`` key says why
        it cannot be trusted (unreadable, or its MAC does not match: edited without the key)."""
        if self.anchor is None or not self.anchor.is_file():
            return None
        try:
            found = json.loads(self.anchor.read_text())
            seq, digest, mac = int(found["seq"]), str(found["hash"]), str(found["mac"])
        except (OSError, ValueError, KeyError, TypeError):
            return {"seq": 0, "hash": "", "problem": f"the anchor {self.anchor} is unreadable"}
        if mac != self._head_mac(seq, digest):
            return {"seq": seq, "hash": digest, "problem": f"the anchor {self.anchor} was altered"}
        return {"seq": seq, "hash": digest}

    @staticmethod
    def _to_entry(r: AuditRow) -> AuditEntry:
        return AuditEntry(r.seq, r.at, r.actor, r.role, r.action, r.target, r.outcome, r.epsilon,
                          json.loads(r.detail), r.prev_hash, r.hash)

    def entries(self, *, since_seq: int = 0, limit: int = 100, actor: str | None = None) -> list[AuditEntry]:
        """Entries with ``seq > since_seq`` in order, at most ``limit``."""
        with Session(self.engine) as session:
            query = select(AuditRow).where(AuditRow.seq > since_seq).order_by(AuditRow.seq).limit(limit)
            if actor is not None:
                query = query.where(AuditRow.actor == actor)
            return [self._to_entry(r) for r in session.scalars(query)]

    def _iter_rows(self, session: Session, batch: int = 5000) -> Iterator[AuditRow]:
        last = 0
        while True:
            rows = list(session.scalars(select(AuditRow).where(AuditRow.seq > last).order_by(AuditRow.seq)
                                        .limit(batch)))
            if not rows:
                return
            yield from rows
            last = rows[-1].seq

    def verify(self, max_problems: int = 50) -> VerifyResult:
        """Walk the whole chain; report every edited, inserted or deleted entry (up to ``max_problems``)."""
        problems: list[str] = []
        expected_seq, prev, count = 1, GENESIS, 0
        with Session(self.engine) as session:
            for r in self._iter_rows(session):
                count += 1
                if r.seq != expected_seq:
                    problems.append(f"entries {expected_seq}..{r.seq - 1} are missing (deleted)"
                                    if r.seq > expected_seq else f"entry {r.seq} is out of order")
                if r.prev_hash != prev:
                    problems.append(f"entry {r.seq}: does not chain to the entry before it (an entry was "
                                    "deleted or replaced)")
                canonical = _canonical(r.seq, r.at, r.actor, r.role, r.action, r.target, r.outcome, r.epsilon,
                                       r.detail)
                if self._entry_hash(r.prev_hash, canonical) != r.hash:
                    problems.append(f"entry {r.seq}: contents do not match its hash (edited)")
                expected_seq, prev = r.seq + 1, r.hash
                if len(problems) >= max_problems:
                    break
            head = session.get(AuditHeadRow, 1)
        if head is None:
            if count:
                problems.append("the head record is missing")
        else:
            if head.mac != self._head_mac(head.seq, head.hash):
                problems.append("the head record was altered")
            if len(problems) < max_problems and (head.seq != expected_seq - 1 or head.hash != prev):
                problems.append(f"the log ends at entry {expected_seq - 1} but the head says {head.seq} "
                                "(newest entries deleted)")
        problems += self._anchor_problems(expected_seq - 1, prev)
        return VerifyResult(entries=count, head_hash=prev, problems=problems)

    def _anchor_problems(self, last_seq: int, last_hash: str) -> list[str]:
        """What the anchor outside the database says about the chain that ends at ``last_seq``."""
        anchor = self.read_anchor()
        if anchor is None:
            return []
        if "problem" in anchor:
            return [anchor["problem"]]
        if last_seq < anchor["seq"]:
            return [f"the log ends at entry {last_seq} but the anchor outside the database says {anchor['seq']} "
                    "(entries deleted, or the database was emptied, replaced or rolled back)"]
        if last_seq == anchor["seq"] and last_hash != anchor["hash"]:
            return [f"entry {last_seq} is not the one the anchor outside the database recorded (log replaced)"]
        return []  # the anchor may lag the database by the batch being written; it never leads it

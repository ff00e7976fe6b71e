"""A second factor for the human roles: TOTP codes (RFC 6238), single-use recovery codes, and the short-lived
sessions a code opens.

Why sessions: an API token is a long-lived secret that ends up in scripts and shell histories; for admins and
auditors it alone must not be enough. ``POST /session`` with the token *and* a code from the person's
authenticator app returns a session token (``fis_<id>_<secret>``) valid for ``session_minutes``; the human
roles' API token on its own opens nothing else. Requests then carry the session token, so one code is not asked
for every request (TOTP codes are single use: that would allow one request per 30 seconds).

* Enrolment (``fedinsight tokens mfa enrol <token id>``, run by the operator on the coordinator) makes a
  random 160-bit secret, shown once as base32 text and an ``otpauth://`` URI (no QR code: paste it into the
  app), and ten recovery codes. Enrolling again replaces the secret and the codes and ends open sessions.
* Secrets are stored encrypted (AES-GCM under a key derived from the token pepper, bound to the token id):
  the server must read them back to check codes, and a copy of the database alone does not give them away.
  Recovery codes and session secrets are stored only as HMACs, like API tokens.
* Replay protection: a code's 30-second time step must be later than the last step accepted for that token
  (one clock step of drift either way is accepted), recorded with a conditional ``UPDATE`` so two workers
  cannot both accept one code. A recovery code works once.
* Guessing: the API allows few attempts per token (:mod:`fedinsight.coordinator.api.routes.session`).
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from sqlalchemy import DateTime, Integer, String, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from fedinsight.core.db import Base, create_tables, make_engine
from fedinsight.core.errors import ConfigError

STEP_SECONDS = 30
DIGITS = 6
RECOVERY_CODES = 10
SESSION_PREFIX = "fis"
ISSUER = "fedinsight"


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class MfaRow(Base):
    __tablename__ = "api_token_mfa"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))  # hex(nonce + AES-GCM ciphertext)
    enrolled_at: Mapped[datetime] = mapped_column(DateTime)
    last_step: Mapped[int] = mapped_column(Integer, default=0)


class RecoveryCodeRow(Base):
    __tablename__ = "api_recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[str] = mapped_column(String(32), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class SessionRow(Base):
    __tablename__ = "api_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_id: Mapped[str] = mapped_column(String(32), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime)


@dataclass(frozen=True)
class Enrolment:
    """What the person enrolling needs, shown once: the secret, the URI for the app, the recovery codes."""

    token_id: str
    secret: str
    uri: str
    recovery_codes: list[str]

    def as_dict(self) -> dict[str, object]:
        return {"token_id": self.token_id, "secret": self.secret, "otpauth_uri": self.uri,
                "recovery_codes": self.recovery_codes}


class MfaStore:
    """Enrol tokens, check codes (with replay protection), open and check sessions."""

    def __init__(self, url: str | None, pepper: bytes) -> None:
        self._mac_key = pepper
        self._aead = AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=b"fedinsight mfa secrets").derive(pepper))
        self.engine = make_engine(url)
        create_tables(self.engine, [MfaRow.__table__, RecoveryCodeRow.__table__, SessionRow.__table__])

    def _digest(self, text: str) -> str:
        mac = hmac.HMAC(self._mac_key, hashes.SHA256())
        mac.update(text.encode())
        return mac.finalize().hex()

    def enrol(self, token_id: str, account: str) -> Enrolment:
        """A new secret and recovery codes for ``token_id`` (replacing any earlier ones; open sessions end)."""
        raw = secrets.token_bytes(20)
        nonce = secrets.token_bytes(12)
        sealed = (nonce + self._aead.encrypt(nonce, raw, token_id.encode())).hex()
        codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
        with self.engine.begin() as conn:
            for table in (MfaRow.__table__, RecoveryCodeRow.__table__, SessionRow.__table__):
                conn.execute(delete(table).where(table.c.token_id == token_id))
            conn.execute(MfaRow.__table__.insert().values(token_id=token_id, secret=sealed, enrolled_at=_utcnow(),
                                                          last_step=0))
            conn.execute(RecoveryCodeRow.__table__.insert(),
                         [{"token_id": token_id, "digest": self._digest(c), "used_at": None} for c in codes])
        uri = TOTP(raw, DIGITS, hashes.SHA1(), STEP_SECONDS).get_provisioning_uri(account, ISSUER)
        return Enrolment(token_id, base64.b32encode(raw).decode(), uri, codes)

    def enrolled(self, token_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(MfaRow.token_id).where(MfaRow.token_id == token_id)).first() is not None

    def _totp(self, token_id: str) -> tuple[TOTP, int] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(MfaRow.secret, MfaRow.last_step).where(MfaRow.token_id == token_id)).first()
        if row is None:
            return None
        sealed = bytes.fromhex(row.secret)
        raw = self._aead.decrypt(sealed[:12], sealed[12:], token_id.encode())
        return TOTP(raw, DIGITS, hashes.SHA1(), STEP_SECONDS), int(row.last_step)

    def verify(self, token_id: str, code: str, now: float | None = None) -> bool:
        """True once per accepted code: a code of a step not later than the last accepted one is refused."""
        now = time.time() if now is None else now
        code = code.strip()
        found = self._totp(token_id)
        if found is None or len(code) != DIGITS or not code.isascii() or not code.isdigit():
            return False
        totp, last = found
        current = int(now // STEP_SECONDS)
        matched = [step for step in (current - 1, current, current + 1)
                   if constant_time.bytes_eq(totp.generate(step * STEP_SECONDS), code.encode())]
        step = max(matched, default=None)
        if step is None or step <= last:
            return False
        with self.engine.begin() as conn:  # only one request (or worker) can move the step past this code
            moved = conn.execute(update(MfaRow).where(MfaRow.token_id == token_id, MfaRow.last_step < step)
                                 .values(last_step=step))
        return moved.rowcount == 1

    def use_recovery_code(self, token_id: str, code: str) -> bool:
        """True if ``code`` is one of the token's unused recovery codes (it is then used up)."""
        t = RecoveryCodeRow.__table__
        with self.engine.begin() as conn:
            used = conn.execute(update(t).where(t.c.token_id == token_id, t.c.digest == self._digest(code.strip()),
                                                t.c.used_at.is_(None)).values(used_at=_utcnow()))
        return used.rowcount == 1

    def recovery_codes_left(self, token_id: str) -> int:
        t = RecoveryCodeRow.__table__
        with self.engine.connect() as conn:
            return len(conn.execute(select(t.c.id).where(t.c.token_id == token_id, t.c.used_at.is_(None))).all())

    def open_session(self, token_id: str, minutes: int) -> tuple[str, datetime]:
        """A session token for ``token_id`` (after a good code) and when it expires."""
        if minutes < 1:
            raise ConfigError("a session must last at least one minute")
        session_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        expires = _utcnow() + timedelta(minutes=minutes)
        with self.engine.begin() as conn:
            conn.execute(delete(SessionRow).where(SessionRow.expires_at < _utcnow()))
            conn.execute(SessionRow.__table__.insert().values(id=session_id, token_id=token_id,
                                                              digest=self._digest(secret), expires_at=expires))
        return f"{SESSION_PREFIX}_{session_id}_{secret}", expires

    def session_token_id(self, session: str) -> str | None:
        """The API token id a live session token stands for, or None (unknown, wrong secret, expired)."""
        parts = session.split("_", 2)
        if len(parts) != 3 or parts[0] != SESSION_PREFIX or len(parts[1]) != 16:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(SessionRow.token_id, SessionRow.digest, SessionRow.expires_at)
                               .where(SessionRow.id == parts[1])).first()
        digest = self._digest(parts[2])
        if row is None or not constant_time.bytes_eq(digest.encode(), row.digest.encode()):
            return None
        return row.token_id if row.expires_at > _utcnow() else None

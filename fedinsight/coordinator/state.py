"""Where the coordinator's state lives, reachable from every coordinator-side process.

The coordinator process, the API workers, the CLI (``job``, ``tokens``, ``audit``) and the ServerApp
processes Flower spawns for each job all open the same database and key files. The coordinator passes
their location to its children through the environment (:meth:`CoordinatorState.env`), so a ServerApp
never needs paths in its run config — run configs also reach partners, and partners have no business
knowing where the coordinator keeps its database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError

from fedinsight.coordinator.anomaly import AccessMonitor
from fedinsight.coordinator.auth import TokenStore, audit_key_path, token_pepper_path
from fedinsight.coordinator.config import CoordinatorConfig, load_coordinator_config
from fedinsight.coordinator.job_store import JobStore
from fedinsight.coordinator.mfa import MfaStore
from fedinsight.core.errors import ConfigError, StateIntegrityError
from fedinsight.core.files import private_dir
from fedinsight.core.redact import safe_url
from fedinsight.federation.store import InsightStore
from fedinsight.privacy.audit import AuditLog, load_or_create_key
from fedinsight.privacy.ledger import PrivacyLedger

ENV_DB_URL = "FEDINSIGHT_DB_URL"
ENV_STATE_DIR = "FEDINSIGHT_STATE_DIR"
ENV_CONFIG = "FEDINSIGHT_COORDINATOR_CONFIG"
ENV_ACCOUNTANT = "FEDINSIGHT_ACCOUNTANT"


@dataclass
class CoordinatorState:
    """Database URL + state folder (for key files), with lazily opened stores."""

    db_url: str
    state_dir: Path
    accountant: str = "rdp"

    @classmethod
    def from_config(cls, config: CoordinatorConfig) -> CoordinatorState:
        private_dir(config.state_dir)  # keys, the database and logs: the operator only
        return cls(config.database_url, config.state_dir, config.coordinator.accountant)

    @classmethod
    def from_env(cls) -> CoordinatorState | None:
        """The state a coordinator handed to this process, or None when not running under one."""
        if ENV_STATE_DIR not in os.environ or ENV_DB_URL not in os.environ:
            return None
        return cls(os.environ[ENV_DB_URL], Path(os.environ[ENV_STATE_DIR]), os.environ.get(ENV_ACCOUNTANT, "rdp"))

    @classmethod
    def resolve(cls, config_path: str | Path | None) -> CoordinatorState:
        """From ``--config`` if given, else from the environment, else a ConfigError saying what to pass."""
        if config_path is not None:
            return cls.from_config(load_coordinator_config(config_path, check_files=False))
        if (env_path := os.environ.get(ENV_CONFIG)) is not None:
            return cls.resolve(env_path)
        state = cls.from_env()
        if state is None:
            raise ConfigError("no coordinator configuration: pass --config coordinator.toml")
        return state

    def env(self) -> dict[str, str]:
        return {ENV_DB_URL: self.db_url, ENV_STATE_DIR: str(self.state_dir.resolve()),
                ENV_ACCOUNTANT: self.accountant}

    @property
    def anchor_path(self) -> Path:
        """The audit head outside the database: proof that the state folder has history."""
        return self.state_dir / ANCHOR_FILE

    @cached_property
    def ledger(self) -> PrivacyLedger:
        with readable(self.db_url):
            return PrivacyLedger(self.db_url, accountant=self.accountant)

    @cached_property
    def audit(self) -> AuditLog:
        key = load_or_create_key(audit_key_path(self.state_dir), create=not self.anchor_path.is_file())
        with readable(self.db_url):
            return AuditLog(self.db_url, key, anchor=self.anchor_path)

    @cached_property
    def tokens(self) -> TokenStore:
        with readable(self.db_url):
            return TokenStore(self.db_url, load_or_create_key(token_pepper_path(self.state_dir)))

    @cached_property
    def mfa(self) -> MfaStore:
        with readable(self.db_url):
            return MfaStore(self.db_url, load_or_create_key(token_pepper_path(self.state_dir)))

    @cached_property
    def access(self) -> AccessMonitor:
        """Access alerts and token locks (the API's monitor writes them; the CLI lists and lifts them)."""
        with readable(self.db_url):
            return AccessMonitor(self.db_url)

    @cached_property
    def jobs(self) -> JobStore:
        with readable(self.db_url):
            return JobStore(self.db_url)

    @cached_property
    def insights(self) -> InsightStore:
        with readable(self.db_url):
            return InsightStore(self.db_url)

    def check_integrity(self) -> None:
        """Refuse (:class:`StateIntegrityError`) when the database was lost while the state folder shows history:
        an anchor (or audit key) exists but the database file is missing or empty, cannot be read, or its audit
        log ends before the anchor. Runs before anything opens the database (opening creates a fresh one)."""
        has_key = audit_key_path(self.state_dir).is_file()
        if not self.anchor_path.is_file() and not has_key:
            return  # a first start: nothing to lose
        lost = _sqlite_file_lost(self.db_url)
        if lost:
            raise _lost(self.db_url, lost)
        audit = self.audit
        anchor = audit.read_anchor()
        with readable(self.db_url):
            seq, digest = audit.head()
        if anchor is None:
            if seq == 0:
                raise _lost(self.db_url, "holds no audit entries although the audit key shows history")
            return  # a log written before anchors existed: the next append writes one
        problems = audit._anchor_problems(seq, digest)  # noqa: SLF001 - the same rule verify applies
        if problems:
            raise _lost(self.db_url, problems[0].replace("the log", "its audit log", 1))

    def init_state(self) -> dict[str, object]:
        """Start fresh on purpose (``coordinator start --init-state``): the old anchor is kept beside as
        ``audit.anchor.replaced-<time>``, a new audit key is made if the old one is gone, and the first entry of
        the new log records what was replaced. Returns that record."""
        replaced: dict[str, object] = {"anchor_seq": None, "anchor_hash": None}
        if self.anchor_path.is_file():
            try:
                old = json.loads(self.anchor_path.read_text())
                replaced = {"anchor_seq": int(old.get("seq", 0)), "anchor_hash": str(old.get("hash", ""))}
            except (OSError, ValueError, TypeError, AttributeError):
                replaced["anchor_seq"] = "unreadable"
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            self.anchor_path.rename(self.anchor_path.with_name(f"{ANCHOR_FILE}.replaced-{stamp}"))
        for name in ("audit",):
            self.__dict__.pop(name, None)
        self.audit.append(actor="operator", role="operator", action="state.init", target=safe_url(self.db_url),
                          detail={"replaced": replaced})
        return replaced


ANCHOR_FILE = "audit.anchor"


def _sqlite_file_lost(url: str) -> str | None:
    """Why a SQLite database file cannot be the one with history (missing or empty), or None."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    if not path.exists():
        return "is missing"
    if path.stat().st_size == 0:
        return "is empty (zero bytes)"
    return None


def _lost(url: str, why: str) -> StateIntegrityError:
    return StateIntegrityError(
        f"the coordinator database {safe_url(url)} {why}, but its state folder shows history (audit key and "
        "anchor): starting would reset every partner's spent budget. Restore the database from a backup, or start "
        "fresh on purpose with `fedinsight coordinator start --init-state` (spent budgets are lost)")


@contextmanager
def readable(url: str) -> Iterator[None]:
    """Database driver errors (a corrupt SQLite file, an unreachable PostgreSQL) as one clear error."""
    try:
        yield
    except DatabaseError as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StateIntegrityError(
            f"the coordinator database {safe_url(url)} cannot be read ({first}): restore it from a backup, check "
            "the URL and that the server is up, or start fresh with `fedinsight coordinator start --init-state` "
            "(spent budgets are lost)") from None

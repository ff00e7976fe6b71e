"""The one database behind the coordinator: ledger, insight store, runs, audit log.

SQLite through SQLAlchemy by default; any SQLAlchemy URL works (``postgresql+psycopg://...``).
Why a real database: budgets spent must survive restarts, and two concurrent jobs must not both pass
a budget check. On SQLite writing transactions take the write lock up front (``BEGIN IMMEDIATE``), so a
read-check-write sequence is serialised; on PostgreSQL the ledger locks the partner's budget row.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase

from fedinsight.core.files import private_file
from fedinsight.core.paths import fedinsight_home

WRITE_LOCK_OPTION = "fedinsight_write_lock"
"""Execution option: on SQLite, begin the transaction with the write lock held (BEGIN IMMEDIATE)."""


def write_locked(engine: Engine) -> Engine:
    """An engine view whose transactions take SQLite's write lock up front (for check-then-write)."""
    return engine.execution_options(**{WRITE_LOCK_OPTION: True})


class Base(DeclarativeBase):
    """Declarative base shared by every fedinsight table."""


def create_tables(engine: Engine, tables: list) -> None:  # type: ignore[type-arg]
    """Create ``tables`` if missing, holding SQLite's write lock while checking and creating: processes opening
    one new database file at the same moment (simulated partners sharing a ledger file) wait for each other
    instead of failing with "database is locked"."""
    Base.metadata.create_all(write_locked(engine), tables=tables)


def default_db_url() -> str:
    """``$FEDINSIGHT_DB_URL`` or a SQLite file under ``$FEDINSIGHT_HOME``."""
    if url := os.environ.get("FEDINSIGHT_DB_URL"):
        return url
    return f"sqlite:///{fedinsight_home() / 'fedinsight.db'}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory or URI-style database)."""
    try:
        database = make_url(url).database
    except ArgumentError:
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(url: str | None = None) -> Engine:
    """Create an engine (stores create their own tables); SQLite gets a busy timeout and lockable begins."""
    url = url or default_db_url()
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            private_file(path)  # budgets, tokens and erasures: 0600 from the start, not the umask's 0644
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _no_pysqlite_autobegin(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" hook below issue BEGIN

        @event.listens_for(engine, "begin")
        def _begin(conn):  # type: ignore[no-untyped-def]
            immediate = conn.get_execution_options().get(WRITE_LOCK_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine

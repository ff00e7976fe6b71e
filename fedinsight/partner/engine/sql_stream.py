"""A SQL database table streamed as Arrow record batches through SQLAlchemy.

Why not DuckDB's ``postgres`` extension: DuckDB downloads its extensions at run time, and a partner's machine
(like this one) may reach only its package registry. SQLAlchemy is already how fedinsight talks to databases
(ledgers, registers), works for PostgreSQL, SQLite and anything with a driver, and a server-side cursor
(``stream_results``) hands rows over in batches, so the table is never held whole in Python: DuckDB copies each
batch into its own storage, which spills to the partner's temp folder beyond ``engine-memory``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
from sqlalchemy import MetaData, Table, create_engine, inspect, select
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from fedinsight.core.errors import ConfigError

BATCH_ROWS = 100_000


def _engine(url: str) -> SqlEngine:
    try:
        return create_engine(url)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        raise ConfigError(f"node config db-url is not a database URL SQLAlchemy can use ({type(exc).__name__}: "
                          f"{exc}); e.g. postgresql+psycopg://user@host/db or sqlite:////path/file.db") from None


def database_tables(url: str) -> set[str]:
    """The tables the database at ``url`` holds; a URL that cannot be reached is a ConfigError naming db-url."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    except SQLAlchemyError as exc:
        reason = str(exc.orig if getattr(exc, "orig", None) is not None else exc).splitlines()[0]
        raise ConfigError(f"node config db-url: the database cannot be reached ({reason}); check the host, the "
                          "database name and the credentials") from None
    finally:
        engine.dispose()


def arrow_batches(url: str, table: str, batch_rows: int = BATCH_ROWS) -> pa.RecordBatchReader:
    """The rows of ``table`` as a RecordBatchReader (every column as text: the engine types them like a CSV's)."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            columns = [c["name"] for c in inspect(conn).get_columns(table)]
    except SQLAlchemyError as exc:
        engine.dispose()
        raise ConfigError(f"node config db-url: cannot read table {table} ({str(exc).splitlines()[0]})") from None
    schema = pa.schema([(c, pa.large_string()) for c in columns])

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            with engine.connect() as conn:
                rows = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(
                    select(Table(table, MetaData(), autoload_with=conn)))
                for part in rows.partitions(batch_rows):
                    cols = list(zip(*part, strict=True)) if part else [() for _ in columns]
                    yield pa.record_batch([pa.array([_text(v) for v in col], pa.large_string()) for col in cols],
                                          schema=schema)
        finally:
            engine.dispose()

    return pa.RecordBatchReader.from_batches(schema, batches())


def _text(value: object) -> str | None:
    """A database value as the text a CSV would hold (timestamps in ISO form, booleans as true/false)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[no-any-return]
    return str(value)

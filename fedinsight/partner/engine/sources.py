"""Where a partner's canonical tables come from, as the engine registers them (nothing is read here).

- :class:`CsvFile`: one CSV file, read as text and typed by the engine (leading zeros in ids survive);
- :class:`ParquetFiles`: one Parquet file or a directory of many (``dir/**/*.parquet``, e.g. a lake's partitions);
- :class:`SqlTable`: a table of a SQL database by SQLAlchemy URL (PostgreSQL, SQLite ...), streamed in Arrow
  batches (see :mod:`.sql_stream` for why not DuckDB's postgres extension);
- :class:`FrameTable`: a pandas frame already in memory (a partner whose mapping transforms its exports: the
  mapping is applied by the pandas reader, then the engine computes on the result).

:func:`folder_sources` finds a plain partner folder's tables by their canonical names (``transactions.csv``,
``transactions.parquet`` or a ``transactions/`` directory of Parquet files); :func:`database_sources` names a
database's tables (``db-url`` and ``db-tables`` in the node config).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import TABLES


@dataclass(frozen=True)
class CsvFile:
    path: Path

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class ParquetFiles:
    path: Path  # a file, or a directory searched recursively for *.parquet

    @property
    def pattern(self) -> str:
        return str(self.path / "**" / "*.parquet") if self.path.is_dir() else str(self.path)

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class SqlTable:
    url: str
    table: str

    def describe(self) -> str:
        return f"table {self.table} of db-url"


@dataclass(frozen=True, eq=False)
class FrameTable:
    frame: pd.DataFrame

    def describe(self) -> str:
        return "mapped frame"


Source = CsvFile | ParquetFiles | SqlTable | FrameTable

FileStamp = tuple[str, int, int, int, int]


def file_stamp(path: Path) -> FileStamp:
    """A file's path with its inode, size, modification and change times: any write to it, in place or by an atomic
    replace, changes the stamp (no one can set the change time back). What a per-process memo of something read
    from the file is keyed by."""
    st = path.stat()
    return str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def files_stamp(sources: Sequence[Source]) -> tuple[FileStamp, ...] | None:
    """Every file behind ``sources`` stamped (:func:`file_stamp`); None when one of them is not a file (a database
    table or a frame in memory can change without a trace, so nothing read from it is memoized)."""
    stamps: list[FileStamp] = []
    for source in sources:
        if isinstance(source, CsvFile):
            stamps.append(file_stamp(source.path))
        elif isinstance(source, ParquetFiles):
            files = sorted(source.path.rglob("*.parquet")) if source.path.is_dir() else [source.path]
            stamps += [file_stamp(f) for f in files]
        else:
            return None
    return tuple(stamps)


def folder_sources(folder: Path) -> dict[str, Source]:
    """The canonical tables of a plain partner folder (no mapping), by name; two files for one table is an error."""
    found: dict[str, Source] = {}
    for entry in sorted(Path(folder).iterdir()):
        name = entry.name.split(".")[0].lower()
        if name not in TABLES or entry.name.startswith("."):
            continue
        suffix = entry.suffix.lower()
        if entry.is_dir():
            if not any(entry.rglob("*.parquet")):
                continue
            source: Source = ParquetFiles(entry)
        elif suffix == ".csv":
            source = CsvFile(entry)
        elif suffix == ".parquet":
            source = ParquetFiles(entry)
        else:
            continue
        if name in found:
            raise ConfigError(f"{folder}: two sources for the '{name}' table ({found[name].describe()} and "
                              f"{entry.name}); keep one")
        found[name] = source
    return found


def database_sources(url: str, tables: str = "") -> dict[str, Source]:
    """``db-url`` (SQLAlchemy URL) and ``db-tables`` (``transactions=orders,customers=clients``; default: the
    canonical names) as sources."""
    names = {t: t for t in ("customers", "transactions", "events")}
    for part in filter(None, (p.strip() for p in tables.split(","))):
        canonical, sep, table = part.partition("=")
        if not sep or canonical.strip() not in TABLES or not table.strip():
            raise ConfigError(f"node config db-tables: '{part}' must be <canonical table>=<database table> with a "
                              f"canonical table among {', '.join(TABLES)}")
        names[canonical.strip()] = table.strip()
    return {canonical: SqlTable(url, table) for canonical, table in names.items()}

"""The partner's engine settings (its node config) and the checks that run before any budget is spent.

=================  ==================================================================================
key                meaning
=================  ==================================================================================
``engine``         ``duckdb`` (default: embedded, one machine, spills to disk) or ``spark``
``spark-master``   Spark's master URL (``spark://host:7077``, ``yarn``, ``local[4]``; default ``local[*]``)
``engine-memory``  DuckDB's memory limit / Spark's driver memory (e.g. ``4GB``); beyond it DuckDB spills to
                   ``<state-dir>/engine-tmp``
``db-url``         a SQLAlchemy URL whose tables are the partner's canonical tables (instead of its folder's)
``db-tables``      ``transactions=orders,customers=clients``: the database's names for them
=================  ==================================================================================

None of these reach the coordinator: they are the partner's own and change nothing a job releases. A wrong
setting (an engine that is not installed, a Spark master nobody answers at, a database URL that cannot be
reached) is one ConfigError naming the engine and the setting, raised when the partner's view opens -- in a
job's hello, before anything is charged.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fedinsight.core.errors import ConfigError
from fedinsight.partner.engine.base import Engine
from fedinsight.partner.engine.sql_stream import database_tables

ENGINES: tuple[str, ...] = ("duckdb", "spark")
KEYS: tuple[str, ...] = ("engine", "spark-master", "engine-memory", "db-url", "db-tables")
_PACKAGES = {"duckdb": "duckdb", "spark": "pyspark"}


@dataclass(frozen=True)
class EngineSettings:
    """What a partner's node config says about its engine (see the module docstring)."""

    engine: str = "duckdb"
    spark_master: str = "local[*]"
    memory: str = ""
    db_url: str = ""
    db_tables: str = ""

    @classmethod
    def from_node(cls, settings: Mapping[str, Any]) -> EngineSettings:
        engine = str(settings.get("engine") or "duckdb").strip().lower()
        if engine not in ENGINES:
            raise ConfigError(f"node config engine={settings.get('engine')!r} is not an engine; use one of "
                              f"{', '.join(ENGINES)}")
        return cls(engine=engine, spark_master=str(settings.get("spark-master") or "local[*]").strip(),
                   memory=str(settings.get("engine-memory") or "").strip(),
                   db_url=str(settings.get("db-url") or "").strip(),
                   db_tables=str(settings.get("db-tables") or "").strip())

    def check(self) -> None:
        """Installed, reachable and readable, or one ConfigError (cached per process once it passed)."""
        _check(self)


@functools.cache
def _check(settings: EngineSettings) -> None:
    package = _PACKAGES[settings.engine]
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"node config engine={settings.engine}: the {package} package is not installed on this "
                          f"partner (pip install {package}), or choose another engine")
    if settings.engine == "spark":
        if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
            raise ConfigError("node config engine=spark: Spark needs Java 17 (set JAVA_HOME or install a JRE)")
        _check_master(settings.spark_master)
    if settings.db_url:
        database_tables(settings.db_url)


def _check_master(master: str) -> None:
    """A ``spark://`` master must accept a connection (Spark itself would retry for minutes before failing)."""
    if master.startswith("local") or master in ("yarn",) or master.startswith("k8s://"):
        return
    if not master.startswith("spark://"):
        raise ConfigError(f"node config spark-master={master!r} is not a Spark master URL; use spark://HOST:PORT, "
                          "yarn, k8s://... or local[N]")
    first = master.removeprefix("spark://").split(",")[0]
    parts = urlsplit(f"//{first}")
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 7077), timeout=3):
            pass
    except OSError as exc:
        raise ConfigError(f"node config spark-master={master!r}: nobody answers there ({exc.strerror or exc}); "
                          "start the Spark master or fix the URL") from None


def open_engine(settings: EngineSettings, temp_dir: Path) -> Engine:
    """A fresh engine for one scan (DuckDB spills under ``temp_dir``; Spark shares its context per process)."""
    settings.check()
    if settings.engine == "spark":
        from fedinsight.partner.engine.spark_backend import SparkEngine

        return SparkEngine(settings.spark_master, settings.memory)
    from fedinsight.partner.engine.duckdb_backend import DuckDBEngine

    return DuckDBEngine(temp_dir, settings.memory)

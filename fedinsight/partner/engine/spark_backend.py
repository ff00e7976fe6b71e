"""The engine for partners beyond one machine: Apache Spark (``pyspark``), by master URL.

Scans are written once in DuckDB's dialect and transpiled to Spark SQL by :mod:`sqlglot` (why SQL + sqlglot
rather than Ibis: docs/scale.md). Each engine is a fresh ``SparkSession.newSession()`` over one shared
SparkContext per master: temp views of one partner are invisible to another (a simulation's process serves
many), while the JVM and executors start once per process. Sessions run in UTC so naive timestamps mean the
same as in DuckDB.

SQL tables (``db-url``) are not read by Spark here: that needs Spark's JDBC reader with the database's JDBC
driver on every executor (a jar the partner installs); the backend refuses them with a ConfigError instead.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

import pandas as pd
import sqlglot

from fedinsight.core.errors import ConfigError, DataValidationError, Problem
from fedinsight.partner.engine.base import Engine
from fedinsight.partner.engine.sources import CsvFile, FrameTable, ParquetFiles, Source, SqlTable


@functools.cache
def _root_session(master: str, memory: str) -> Any:
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(master).appName("fedinsight-partner")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.ansi.enabled", "true")  # a value that does not cast is an error, as in DuckDB
               # string literals' escapes decoded (Spark's default, pinned): sqlglot writes a tab or U+000B in a
               # literal as an escape, and the trimming character set (federation.scan.WHITESPACE) relies on it
               .config("spark.sql.parser.escapedStringLiterals", "false"))
    if master.startswith("local"):  # one machine: as many shuffle partitions as cores, not Spark's 200
        cores = master.removeprefix("local").strip("[]")
        builder = builder.config("spark.sql.shuffle.partitions", cores if cores.isdigit() else str(os.cpu_count() or 2))
    if memory:
        builder = builder.config("spark.driver.memory", memory)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # py4j/JVM start-up failures carry no common type
        raise ConfigError(f"engine spark: cannot start a session on node config spark-master={master!r} "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    session.sparkContext.setLogLevel("ERROR")
    return session


def _schema(frame: pd.DataFrame) -> str:
    """A Spark DDL schema for a pandas frame (explicit: a column of only missing values cannot be inferred)."""
    def kind(dtype: object) -> str:
        if pd.api.types.is_bool_dtype(dtype):
            return "boolean"
        if pd.api.types.is_integer_dtype(dtype):
            return "bigint"
        if pd.api.types.is_float_dtype(dtype):
            return "double"
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return "timestamp"
        return "string"

    return ", ".join(f"`{c}` {kind(t)}" for c, t in frame.dtypes.items())


def to_spark_sql(sql: str) -> str:
    """A DuckDB-dialect query as Spark SQL (the one place the two dialects meet)."""
    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]


class SparkEngine(Engine):
    """Spark by master URL (``local[1]`` in tests, ``spark://host:7077`` or ``yarn`` in deployment)."""

    name = "spark"

    def __init__(self, master: str, memory: str = "") -> None:
        self.master = master
        self.session = _root_session(master, memory).newSession()

    def register(self, name: str, source: Source) -> None:
        reader = self.session.read
        if isinstance(source, CsvFile):
            frame = reader.option("header", "true").option("inferSchema", "false").csv(str(source.path))
        elif isinstance(source, ParquetFiles):
            if source.path.is_dir():
                reader = reader.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.parquet")
            frame = reader.parquet(str(source.path))
        elif isinstance(source, SqlTable):
            raise ConfigError("engine spark: node config db-url is not supported with engine = spark (Spark reads "
                              "databases through JDBC drivers installed on its executors); use engine = duckdb, "
                              "or export the table to Parquet")
        elif isinstance(source, FrameTable):
            rows = source.frame.astype(object).where(source.frame.notna(), None).itertuples(index=False, name=None)
            frame = self.session.createDataFrame(list(rows), _schema(source.frame))
        else:  # pragma: no cover - Source is a closed union
            raise TypeError(source)
        frame.createOrReplaceTempView(name)

    def columns(self, name: str) -> list[str]:
        return list(self.session.table(name).columns)

    def column_types(self, name: str) -> dict[str, str]:
        return {str(c): str(t).lower() for c, t in self.session.table(name).dtypes}

    def create_view(self, name: str, sql: str) -> None:
        self.session.sql(to_spark_sql(sql)).createOrReplaceTempView(name)

    def fetch(self, sql: str, drop: tuple[str, ...] = ()) -> pd.DataFrame:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return self.session.sql(to_spark_sql(sql)).drop(*drop).toPandas()
        except Exception as exc:  # Spark raises its own hierarchy (pyspark.errors); a cast failure is bad data
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "CAST" in text.upper() or "NUMBER_FORMAT" in text.upper():
                # Spark's text quotes the offending value: it stays in ``values``, shown on the partner only
                raise DataValidationError(Problem("engine spark", "a value does not have its canonical type; run "
                                                  "'fedinsight data validate' on the partner's folder",
                                                  values=(text,))) from None
            raise

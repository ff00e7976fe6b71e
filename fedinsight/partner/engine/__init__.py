"""The partner-side engine: a partner's own tables scanned where they lie, by DuckDB or by Spark.

A map of the modules (one concept each):

- :mod:`.sources` -- where tables come from: a CSV, a directory of Parquet files, a SQL table, a frame;
- :mod:`.sql_stream` -- a SQL table streamed in Arrow batches through SQLAlchemy;
- :mod:`.base` -- the :class:`Engine` interface (register, view, query; exact money sums);
- :mod:`.duckdb_backend` -- DuckDB embedded (default): out-of-core, spills to the partner's temp folder;
- :mod:`.spark_backend` -- Spark by master URL; queries transpiled from DuckDB's dialect by sqlglot;
- :mod:`.settings` -- the node config (``engine``, ``spark-master``, ``engine-memory``, ``db-url``,
  ``db-tables``) and its checks, before any budget is spent;
- :mod:`.relations` -- the tables protected inside the engine: PII check, typed views, consent and erasure as a
  semi-join on the in-scope customers; and, for the partner's own target lists only, its raw contact column;
- :mod:`.runner` -- one scan from start to end, with the result's customer ids tokenized.

Tasks never import this package: they define a :class:`~fedinsight.federation.scan.Scan` and call
``partner.data_view.scan(...)`` through the partner data view (:mod:`fedinsight.partner.view`).
"""

from fedinsight.partner.engine.base import Engine
from fedinsight.partner.engine.runner import run_scan
from fedinsight.partner.engine.settings import ENGINES, KEYS, EngineSettings, open_engine
from fedinsight.partner.engine.sources import CsvFile, FrameTable, ParquetFiles, Source, SqlTable

__all__ = ["ENGINES", "KEYS", "CsvFile", "Engine", "EngineSettings", "FrameTable", "ParquetFiles", "Source",
           "SqlTable", "open_engine", "run_scan"]

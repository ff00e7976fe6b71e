"""The engine interface: what the partner data view asks of DuckDB or Spark.

An engine holds named relations (a partner's raw sources, typed views over them, the in-scope customers) and
answers queries written in DuckDB's SQL dialect with small pandas frames. It never decides what may be read:
the view (:mod:`.relations`) builds the relations so that every query sees only in-scope customers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from decimal import Decimal
from types import TracebackType

import pandas as pd

from fedinsight.partner.engine.sources import Source


class Engine(ABC):
    """A partner-side query engine (one per scan; the heavy parts such as a Spark context are shared)."""

    name: str

    @abstractmethod
    def register(self, name: str, source: Source) -> None:
        """Make ``source`` queryable as ``name`` without reading it (SQL tables are streamed in)."""

    @abstractmethod
    def columns(self, name: str) -> list[str]:
        """The column names of a registered relation."""

    @abstractmethod
    def column_types(self, name: str) -> dict[str, str]:
        """Column name -> its type as the engine names it, lower case (``timestamp``, ``varchar``, ``bigint`` ...)."""

    @abstractmethod
    def create_view(self, name: str, sql: str) -> None:
        """A named view defined by a query in DuckDB's dialect."""

    @abstractmethod
    def fetch(self, sql: str, drop: tuple[str, ...] = ()) -> pd.DataFrame:
        """Run a query (DuckDB dialect) and return its result without the columns ``drop``; it must be small."""

    def query(self, sql: str, drop: tuple[str, ...] = ()) -> pd.DataFrame:
        """:meth:`fetch` with exact decimals (money sums) turned into floats, correctly rounded. ``drop``: columns
        left out before the result becomes pandas (a row-level scan's raw ids: one Python string per row)."""
        return exact_floats(self.fetch(sql, drop))

    def close(self) -> None:  # noqa: B027 - optional for backends with nothing to release
        """Release the engine's resources (temp files, connections)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def exact_floats(frame: pd.DataFrame) -> pd.DataFrame:
    """Decimal columns as float64 via ``float(Decimal)`` (correctly rounded: both engines give the same double)."""
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object:
            present = values.dropna()
            if len(present) and isinstance(present.iloc[0], Decimal):
                frame[column] = [float(v) if v is not None else float("nan") for v in values]
    return frame

"""The PII scan of a table too large for memory: batch by batch, findings merged.

Why: ``partner init`` (and ``data synth --policy``) scanned every table read whole into pandas; a partner with
100 M transactions needed more than 12 GB for it. Scanning batches of rows bounds memory by the batch. A column is
a finding when it is one in **any** batch (the stricter reading: a column that looks like personal data in one
part of the table is declared), with the largest share seen. A table that fits one batch gives exactly
:func:`~fedinsight.privacy.pii.scan_table`'s findings.

:func:`scan_parquet` reads a Parquet table (a file or a directory of files) that way, and bounds the time too: a
table larger than :data:`MAX_ROWS` is read on row groups spread over it, and the caller learns how much was read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from fedinsight.privacy.pii import KEY_COLUMN, PiiFinding, scan_table

BATCH_ROWS = 1_000_000
"""Rows per batch of :func:`scan_parquet`: ~0.3 GB of text columns in pandas at a time."""
MAX_ROWS = 4_000_000
"""Rows of one table :func:`scan_parquet` scans at most: a larger table is scanned in row groups spread
evenly over it. Why: every row of 100 M transactions took longer than writing them, on values that repeat the
same few patterns; 4 M rows still give a value that 1 row in 10,000 holds ~400 chances to be sampled (and the
engine's own check at scan time samples 2,000 rows of every table)."""


def scan_batches(table: str, batches: Iterable[pd.DataFrame], *,
                 schema_columns: Collection[str] = ()) -> list[PiiFinding]:
    """Findings for one table given as consecutive batches of its rows (see the module docstring)."""
    found: dict[str, PiiFinding] = {}
    for batch in batches:
        for finding in scan_table(table, batch, schema_columns=schema_columns):
            known = found.get(finding.column)
            if known is None or finding.share > known.share:
                found[finding.column] = finding
    return list(found.values())


def scan_parquet(table: str, path: str | Path, *,
                 schema_columns: Collection[str] = ()) -> tuple[list[PiiFinding], tuple[int, int] | None]:
    """The findings of one Parquet table, read in batches of :data:`BATCH_ROWS` rows and only the columns a value
    check can flag (text and integers; the key, money, times and flags never are), at most :data:`MAX_ROWS` rows:
    memory and time stay bounded whatever the table's size (100 M transactions: see docs/scale.md). Also
    (rows read, rows held) when the table was read on part of its rows, else ``None``."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(path), format="parquet")
    columns = [f.name for f in dataset.schema if f.name != KEY_COLUMN and not (
        pa.types.is_floating(f.type) or pa.types.is_temporal(f.type) or pa.types.is_boolean(f.type))]
    if not columns:  # (decimals are checked: a phone number stored as DECIMAL(12, 0) is one)
        return [], None
    part = _spread(dataset)
    sampled = None
    if part is not dataset:  # (count_rows() of a row-group fragment counts its whole file)
        read, held = sum(rg.num_rows for f in part.get_fragments() for rg in f.row_groups), dataset.count_rows()
        if read < held:
            sampled = (read, held)
    batches = _rebatched(part.to_batches(columns=columns, batch_size=BATCH_ROWS,
                                         batch_readahead=1, fragment_readahead=1), BATCH_ROWS)
    return scan_batches(table, batches, schema_columns=schema_columns), sampled


def _spread(dataset: Any) -> Any:
    """``dataset`` itself when it has at most :data:`MAX_ROWS` rows, else its row groups spread evenly over it
    up to that many rows, the first and the last always among them (tables are often in time order: a column that
    began holding personal data recently has it at the end; see :data:`MAX_ROWS`)."""
    import pyarrow.dataset as ds

    if dataset.count_rows() <= MAX_ROWS:
        return dataset
    groups = [g for fragment in dataset.get_fragments() for g in fragment.split_by_row_group()]
    sizes = [sum(rg.num_rows for rg in g.row_groups) for g in groups]  # (count_rows() counts the whole file)
    mean = max(sum(sizes) / len(groups), 1.0)
    wanted = max(min(2, len(groups)), min(len(groups), int(MAX_ROWS // mean)))
    picked = [groups[0]] if wanted == 1 else [groups[round(i * (len(groups) - 1) / (wanted - 1))]
                                              for i in range(wanted)]
    return ds.FileSystemDataset(picked, dataset.schema, dataset.format, dataset.filesystem)


def _rebatched(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pd.DataFrame]:
    """Consecutive frames of ``rows`` rows (the last one shorter) from Arrow batches of any size (a file's row
    groups): a table of up to ``rows`` rows comes as one frame, as the pandas reader would give it."""
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        held.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(held).to_pandas()
            held, count = [], 0
    if count:
        yield pa.Table.from_batches(held).to_pandas()

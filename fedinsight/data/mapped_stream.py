"""Validating a mapped partner table batch by batch, for ``data validate`` on large exports.

Why: :mod:`fedinsight.data.mapped` reads every file of a table into memory (it hands typed tables to the
partner's data view), so validating a multi-GB export of a partner's own system needed several times its size in
memory. Here a table the mapping lets us read line by line goes through the same chunked readers as a
canonical-named file (:mod:`fedinsight.data.stream`): each batch is renamed to canonical columns, parsed with the
mapping's number and timestamp readers and checked; duplicate keys are compared by 8-byte hashes across batches.

"Where the mapping allows it": a table is streamed when its files are larger than one batch and

* it has no ``group_by`` (an order's lines may be anywhere in the file: grouping needs them all at once);
* it has no value maps (an unmapped value is a mapping problem counted over the whole table);
* it is not the ``customers`` table (the other tables' customer ids are checked against it, so it is read whole);
* each CSV file's encoding is declared in the mapping or the file is UTF-8 (auto-detecting GB18030 needs the
  whole file), and it is CSV or Parquet.

Everything else is read whole, as before. The problems are the ones a whole read reports (merged over batches).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from fedinsight.core.errors import Problem
from fedinsight.data.mapped import MissingColumn, canonical_columns, missing_column_problems, record_missing_columns
from fedinsight.data.mapping import PartnerMapping, TableMapping
from fedinsight.data.stream import (
    KeyHashes,
    csv_batches,
    header_of,
    merge_problems,
    parquet_batches,
    parquet_data_bytes,
    parquet_header,
)
from fedinsight.data.synonyms import best_header
from fedinsight.data.validate import (
    TableSource,
    dupes_problem,
    duplicate_key_problems,
    duplicated_columns,
    file_stat_problem,
    row_problems,
    validate_frame,
)
from fedinsight.data.values import number_hint, parse_number, parse_timestamps, timestamp_hint

UNKNOWN_CUSTOMER = "customer_id not in this partner's customers table"


def _is_utf8(path: Path) -> bool:
    """Whether the whole file decodes as UTF-8 (read in 1 MiB chunks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except (UnicodeDecodeError, OSError):
        return False
    return True


def _data_bytes(path: Path) -> int:
    try:
        return parquet_data_bytes(path) if path.suffix.lower() == ".parquet" else path.stat().st_size
    except Exception:  # noqa: BLE001 - a corrupt or unreadable file is reported by the whole read
        return 0


def streamable(name: str, table: TableMapping, block_bytes: int) -> bool:
    """Whether ``table`` is validated in batches (see the module docstring)."""
    if name == "customers" or table.group_by is not None or table.values or not table.files:
        return False
    for path in table.files:
        if file_stat_problem(path) is not None or path.suffix.lower() not in (".csv", ".parquet"):
            return False
        if path.suffix.lower() == ".csv" and table.encoding is None and not _is_utf8(path):
            return False
    return sum(_data_bytes(p) for p in table.files) > block_bytes


def _source(mapping: PartnerMapping, table: TableMapping, frame: pd.DataFrame, path: Path, numbers: np.ndarray,
            labels: dict[str, str]) -> TableSource:
    parquet = path.suffix.lower() == ".parquet"
    return TableSource(frame, 1 if parquet else 2, "rows" if parquet else "lines",
                       np.full(len(frame), str(path), dtype=object), numbers, labels,
                       partial(parse_number, decimal=table.decimal), number_hint(table.decimal),
                       partial(parse_timestamps, fmt=table.timestamp_format, timezone=mapping.timezone),
                       timestamp_hint(table.timestamp_format, mapping.timezone))


def stream_table(mapping: PartnerMapping, table: TableMapping, *, block_bytes: int, now: pd.Timestamp | None,
                 known_customers: pd.Series | None, first_file: str) -> tuple[list[Problem], list[Problem]]:
    """(data problems, mapping problems) of one mapped table, read batch by batch. ``known_customers``: the
    partner's customer ids when its customers table read cleanly (the cross-table check, as a whole read makes it
    on a table without other problems); ``first_file``: the file a cross-table problem is filed under."""
    labels = {c: table.source(c) for c in table.spec.column_names if table.source(c) != c}
    problems: list[Problem] = []
    missing: dict[str, MissingColumn] = {}
    usable: list[Path] = []
    for path in table.files:
        try:
            header = parquet_header(path) if path.suffix.lower() == ".parquet" else \
                header_of(path, table.encoding or "utf-8", table.delimiter)
        except Exception as exc:  # noqa: BLE001 - named, value-free
            problems.append(Problem(str(path), f"cannot be read ({type(exc).__name__})"))
            continue
        if dupes := duplicated_columns(header):
            problems.append(dupes_problem(str(path), dupes))
            continue
        if table.implicit or record_missing_columns(table, path, [h.strip() for h in header], missing):
            usable.append(path)
    own = missing_column_problems(mapping, missing)
    if usable and not table.implicit and not own:
        first = pd.DataFrame(columns=[h.strip() for h in header_of_any(usable[0], table)])
        columns = canonical_columns(table, first).columns
        headers = [c for c in columns if c not in table.spec.column_names]
        for canonical in (c for c in table.spec.required_columns if c not in columns):
            guess = best_header(canonical, headers)
            example = f"{canonical} = \"{guess}\"" if guess else f"{canonical} = \"<source column>\""
            own.append(mapping.problem(f"tables.{table.table}.columns", f"maps no source column to the required "
                                                                        f"column '{canonical}'; add e.g. {example}"))
    if problems or own or not usable:
        return problems, own
    per_batch = replace(table.spec, key=())
    name = str(table.files[0])

    def batches() -> Iterator[tuple[pd.DataFrame, TableSource, list[Problem]]]:
        for path in usable:
            read = (parquet_batches(path, block_bytes=block_bytes) if path.suffix.lower() == ".parquet" else
                    csv_batches(path, encoding=table.encoding or "utf-8", delimiter=table.delimiter,
                                block_bytes=block_bytes))
            for raw, numbers in read:
                frame = canonical_columns(table, raw)
                source = _source(mapping, table, frame, path, numbers, labels)
                typed, found = validate_frame(frame, per_batch, name, now=now, source=source)
                yield typed, source, found

    keys = list(table.spec.key)
    hashes, keys_ok, cross = KeyHashes(), bool(keys), []
    try:
        for typed, source, found in batches():
            problems += found
            keys_ok = keys_ok and all(k in typed.columns for k in keys) and not any(p.column in keys for p in found)
            if keys_ok:
                hashes.add(typed[keys])
            if known_customers is not None and "customer_id" in typed.columns:
                unknown = ~typed["customer_id"].isin(known_customers)
                if unknown.any():
                    cross += row_problems(first_file, "customer_id", UNKNOWN_CUSTOMER, unknown, source,
                                          typed["customer_id"])
    except Exception as exc:  # noqa: BLE001 - the parsers' errors, named and value-free
        return [*merge_problems(problems), Problem(name, f"cannot be read as a table ({type(exc).__name__})")], []
    problems = merge_problems(problems)
    suspects = hashes.suspects() if keys_ok else np.empty(0, dtype=np.uint64)
    if suspects.size:
        frames, files, lines = [], [], []
        for typed, source, _ in batches():
            hit = np.isin(KeyHashes.of(typed[keys]), suspects)
            frames.append(typed.loc[hit, keys])
            files.append(source.files[hit])  # type: ignore[index]
            lines.append(source.numbers[hit])  # type: ignore[index]
        rows = pd.concat(frames, ignore_index=True)
        first = usable[0].suffix.lower() == ".parquet"
        problems += duplicate_key_problems(rows, table.spec, name, TableSource(
            rows, 1 if first else 2, "rows" if first else "lines", np.concatenate(files), np.concatenate(lines),
            labels))
    return (problems if problems else merge_problems(cross)), []


def header_of_any(path: Path, table: TableMapping) -> list[str]:
    """A CSV or Parquet file's column names."""
    if path.suffix.lower() == ".parquet":
        return parquet_header(path)
    return header_of(path, table.encoding or "utf-8", table.delimiter)

"""Reading a large CSV or Parquet file in bounded batches, with each record's real line (or row) number, for
``data validate``. Parquet is read with ``ParquetFile.iter_batches`` (:func:`parquet_batches`); the rest of this
docstring is about CSV, where line numbers take more care.

Why: validation read whole files into memory (a 256 MB file needed 2.48 GB; 1 GB under an 8 GB cap failed with
a misleading parser message). Here pandas' C parser hands out one batch of records at a time (about
``block_bytes`` of text, everything as text, read exactly as a whole-file read reads them), so the values held
at once do not grow with the file. pyarrow's streaming CSV reader was tried first: its peak memory still grew
by about 1 MB per MB of file (127 MB of CSV: 259 MB just iterating its batches), while pandas' chunked reader
stayed flat (160 MB for a 20 MB file, 164 MB for 127 MB). The
pieces that need the whole file are kept small: the duplicate-key check holds one 8-byte hash per row and
confirms the rare repeated hash on a second pass (:class:`KeyHashes`), and line numbers are counted as the
batches go by.

Line numbers are file lines, as for a small file: a record is numbered by its first line; quoted line breaks
and blank lines count. When the file holds neither a quote nor a blank line (checked by one streaming scan of
its bytes) a record's line is its position plus two; otherwise Python's csv reader walks the file alongside
the batches and gives each record's first line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from fedinsight.core.errors import Problem

BLOCK_BYTES = 8 << 20  # text per batch; files larger than this are streamed
SCAN_CHUNK = 1 << 20


def needs_line_scan(path: Path) -> bool:
    """Whether record positions and file lines may differ (a quote, so maybe a quoted line break, or a blank
    line). Reads the file in 1 MiB chunks."""
    tail = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(SCAN_CHUNK):
            window = tail + chunk
            if b'"' in window or b"\n\n" in window or b"\n\r\n" in window:
                return True
            tail = chunk[-2:]
    return False


def _record_lines(path: Path, encoding: str, delimiter: str) -> Iterator[int]:
    """The first line of every non-blank record after the header (the header is line 1)."""
    with open(path, encoding=encoding, newline="", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=True)
        previous, header_seen = 0, False
        for record in reader:
            if record and (len(record) > 1 or record[0].strip()):
                if header_seen:
                    yield previous + 1
                header_seen = True
            previous = reader.line_num


def rows_per_batch(path: Path, block_bytes: int) -> int:
    """How many records make about ``block_bytes`` of text, from the mean line length of the first 64 KiB."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    mean = max(1.0, len(head) / max(1, head.count(b"\n")))
    return max(100, int(block_bytes / mean))


def csv_batches(path: Path, *, encoding: str = "utf-8", delimiter: str = ",",
                block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """Yield (batch with every value as text, each row's file line), read exactly as a whole-file read reads
    (pandas' C parser, ``dtype=str``), about ``block_bytes`` of text at a time. Raises the parser's errors for a
    malformed file (the caller names the file)."""
    lines = _record_lines(path, encoding, delimiter) if needs_line_scan(path) else None
    done = 0
    with pd.read_csv(path, dtype=str, skipinitialspace=True, sep=delimiter, encoding=encoding,
                     chunksize=rows_per_batch(path, block_bytes)) as reader:
        for frame in reader:
            if frame.empty:
                continue
            frame.columns = [str(c).strip() for c in frame.columns]
            frame = frame.reset_index(drop=True)
            if lines is None:
                numbers = np.arange(done, done + len(frame), dtype=np.int64) + 2
            else:
                numbers = np.fromiter(lines, dtype=np.int64, count=len(frame))
            done += len(frame)
            yield frame, numbers


class KeyHashes:
    """One 64-bit hash per row's key (8 bytes a row instead of the keys themselves); repeated hashes are only
    *suspects*, confirmed or cleared by comparing the real keys of those rows on a second pass."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []

    @staticmethod
    def of(keys: pd.DataFrame) -> np.ndarray:
        return pd.util.hash_pandas_object(keys.astype("str"), index=False).to_numpy(dtype=np.uint64)

    def add(self, keys: pd.DataFrame) -> None:
        self.parts.append(self.of(keys))

    def suspects(self) -> np.ndarray:
        """The hashes seen more than once (sorted). Sorts in place and lets go of the parts: one array of 8 bytes
        a row at the end."""
        if not self.parts:
            return np.empty(0, dtype=np.uint64)
        every = np.concatenate(self.parts)
        self.parts = [every]
        every.sort()
        return np.unique(every[1:][every[1:] == every[:-1]])


_ROWS = re.compile(r"^(?P<msg>.*) in (?P<n>\d+) row\(s\) \((?P<unit>lines|rows) (?P<shown>[\d, ]+?)"
                   r"(?: and (?P<more>\d+) more)?\)$")


def merge_problems(problems: list[Problem], max_rows: int = 10, max_values: int = 5) -> list[Problem]:
    """Problems of all batches as if the file had been read at once: the same finding in several batches (same
    file, column and message) becomes one, with the rows counted together, the first ``max_rows`` line numbers
    and up to ``max_values`` values; a finding that is not about rows (a missing column) appears once."""
    merged: dict[tuple[str, str | None, str], list] = {}
    for problem in problems:
        m = _ROWS.match(problem.message)
        if m is None:
            merged.setdefault((problem.file, problem.column, problem.message), [problem])
            continue
        key = (problem.file, problem.column, f"{m['msg']}\0{m['unit']}")
        count = int(m["n"])
        shown = [int(r) for r in m["shown"].split(",")]
        entry = merged.setdefault(key, [None, 0, [], []])
        entry[1] += count
        entry[2] = (entry[2] + shown)[:max_rows]
        entry[3] = list(dict.fromkeys([*entry[3], *problem.values]))[:max_values]
    out = []
    for (file, column, message), entry in merged.items():
        if entry[0] is not None:
            out.append(entry[0])
            continue
        msg, unit = message.split("\0")
        n, shown = entry[1], entry[2]
        more = f" and {n - max_rows} more" if n > max_rows else ""
        text = f"{msg} in {n} row(s) ({unit} {', '.join(map(str, shown))}{more})"
        out.append(Problem(file, text, column=column, values=tuple(entry[3])))
    return out


def header_of(path: Path, encoding: str, delimiter: str = ",") -> list[str]:
    """The first record of a CSV file, names exactly as pyarrow reads them (read with the csv module: at most one
    record is held)."""
    with open(path, encoding=encoding, newline="", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        for record in reader:
            if record and (len(record) > 1 or record[0].strip()):
                return [record[0].removeprefix("\ufeff"), *record[1:]]
    return []


def parquet_data_bytes(path: Path) -> int:
    """The uncompressed size of a Parquet file's data, from its footer (what a whole read would hold, roughly)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


def parquet_header(path: Path) -> list[str]:
    """A Parquet file's column names, from its footer (no data read)."""
    import pyarrow.parquet as pq

    return [str(n) for n in pq.ParquetFile(path).schema_arrow.names]


def parquet_batches(path: Path, *, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """Yield (batch in the file's own types, each row's number counted from 1 over the whole file), about
    ``block_bytes`` of uncompressed data at a time (``ParquetFile.iter_batches``: one row group's pages at most
    are held, never the whole file). Raises pyarrow's errors for a corrupt file (the caller names the file)."""
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    meta = handle.metadata
    data = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    per_row = max(1.0, data / max(1, meta.num_rows))
    done = 0
    for batch in handle.iter_batches(batch_size=max(1000, int(block_bytes / per_row))):
        if batch.num_rows == 0:
            continue
        frame = batch.to_pandas()
        frame.columns = [str(c).strip() for c in frame.columns]
        numbers = np.arange(done, done + len(frame), dtype=np.int64) + 1
        done += len(frame)
        yield frame.reset_index(drop=True), numbers


__all__ = ["BLOCK_BYTES", "KeyHashes", "csv_batches", "header_of", "merge_problems", "needs_line_scan",
           "parquet_batches", "parquet_data_bytes", "parquet_header"]

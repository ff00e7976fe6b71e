"""Reading and validating partner files against the canonical schema.

Why validation is strict and exhaustive: a partner's data engineer runs this on premises before
joining a federation, and a vague or partial error costs a round-trip with the coordinator's operator.
So every problem in every file is collected (not just the first), each names the file, the column,
up to ten offending rows and what was expected, and nothing is written anywhere while validating.

Row numbers: for CSV files they are *line numbers* in the file (the header is line 1; a record whose quoted
field spans several lines is numbered by its first line, and blank lines count); for Parquet files they are
1-based row positions.

A CSV file larger than one batch (8 MiB of text) is validated in batches by :func:`stream_check`, so memory
does not grow with the file (:mod:`fedinsight.data.stream`); the problems are the same as for a whole read.

Files that cannot be read at all (a folder, a pipe, a dangling link or a link loop, no read permission)
are problems too, found with ``os.stat`` before anything is opened: a pipe would block the reader forever.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import errno
import io
import os
import shlex
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from fedinsight.core.errors import DataValidationError, Problem
from fedinsight.data.schema import SUPPORTED_SUFFIXES, TABLES, ColumnSpec, TableSpec
from fedinsight.data.stream import (
    BLOCK_BYTES,
    KeyHashes,
    csv_batches,
    header_of,
    merge_problems,
    parquet_batches,
    parquet_data_bytes,
    parquet_header,
)

TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}
MAX_ROWS_SHOWN = 10
MAX_VALUES_SHOWN = 5
INT64_LIMIT = float(2**63)  # integers at or beyond this do not fit the int64 columns tables are typed to


@dataclass
class TableSource:
    """A raw table as read from disk plus how to turn positions into user-facing row numbers.

    A table read through a partner's mapping (:mod:`fedinsight.data.mapped`) may come from several files:
    ``files``/``numbers`` then give each row's source file and line, ``columns`` the source column of each
    canonical one (problems name what the partner knows), and the parsers read its numbers and timestamps.
    """

    frame: pd.DataFrame
    first_row_number: int  # the number of the first data row (2 for CSV lines, 1 for Parquet rows)
    unit: str  # "lines" or "rows"
    files: np.ndarray | None = None  # per row: the file it came from (None: the file being validated)
    numbers: np.ndarray | None = None  # per row: its line (or row) number in that file
    columns: Mapping[str, str] = field(default_factory=dict)  # canonical -> source column name
    parse_number: Callable[[pd.Series], pd.Series] | None = None
    number_hint: str = ""
    parse_time: Callable[[pd.Series], pd.Series] | None = None
    time_hint: str = "expected ISO 8601, e.g. 2024-03-31 14:05"

    def column_label(self, column: str) -> str:
        source = self.columns.get(column)
        return column if source is None or source == column else f"{source} ({column})"


def table_for_path(path: str | Path) -> TableSpec | None:
    """The canonical table a file holds, from its stem (``transactions.csv`` -> transactions)."""
    return TABLES.get(Path(path).name.split(".")[0].lower())


def _now_naive_utc() -> pd.Timestamp:
    return pd.Timestamp(datetime.utcnow())  # noqa: DTZ003 - naive UTC is the canonical representation


def _read_raw(path: Path, encoding: str) -> tuple[TableSource | None, list[Problem]]:
    """Read a CSV (everything as text) or Parquet file without interpreting values yet."""
    name = str(path)
    raw, problems = read_bytes(path)
    if raw is None:
        return None, problems
    if path.suffix.lower() == ".parquet":
        return parquet_frame(raw, name)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [
            Problem(
                name,
                f"is not valid {encoding} text (byte 0x{raw[exc.start]:02x} on line {line}); "
                f"re-save the file as UTF-8 or pass the file's encoding (--encoding latin-1)",
            )
        ]
    except LookupError:
        return None, [Problem(name, f"unknown text encoding '{encoding}'")]
    return csv_frame(text.removeprefix("\ufeff"), name)


def looks_like_table_file(path: Path) -> bool:
    """A folder entry named after a canonical table that must be checked, whatever it is: a regular file, or a
    ``.csv``/``.parquet`` name that is a folder, pipe or broken link (skipping those silently would let a partner
    join a federation without the table it meant to give)."""
    return table_for_path(path) is not None and (path.is_file() or path.suffix.lower() in SUPPORTED_SUFFIXES)


def _unreadable(name: str, exc: OSError) -> Problem:
    if isinstance(exc, PermissionError):
        return Problem(name, "cannot be read: permission denied; give the user running fedinsight read access "
                             "(e.g. chmod o+r, or run as the file's owner)")
    return Problem(name, f"cannot be read ({exc.strerror or type(exc).__name__})")


def file_stat_problem(path: Path) -> Problem | None:
    """Why ``path`` is not a regular file that can be read, from ``os.stat`` alone (nothing is opened)."""
    name = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            return Problem(name, f"is a symbolic link to a missing file ({os.readlink(path)}); fix or remove the link")
        return Problem(name, "file does not exist")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Problem(name, "is a symbolic link loop; point the link at the real file")
        return _unreadable(name, exc)
    if stat.S_ISDIR(st.st_mode):
        return Problem(name, "is a folder, expected a .csv or .parquet file")
    if not stat.S_ISREG(st.st_mode):
        return Problem(name, "is not a regular file (a pipe, socket or device); export the table to a regular file")
    return None


def unreadable_tables(folder: Path) -> list[Problem]:
    """The table files of ``folder`` that cannot be read at all (a folder, a pipe, a broken link, no permission),
    from ``os.stat`` and ``os.access`` only: cheap enough to check every partner before a job starts."""
    problems = []
    for path in sorted(folder.iterdir()):
        if not looks_like_table_file(path):
            continue
        problem = file_stat_problem(path)
        if problem is None and not os.access(path, os.R_OK):
            problem = _unreadable(str(path), PermissionError(errno.EACCES, "Permission denied"))
        if problem is not None:
            problems.append(problem)
    return problems


def read_bytes(path: Path) -> tuple[bytes | None, list[Problem]]:
    """A table file's bytes, or why it cannot be a table file (missing, a folder, a pipe, a broken link, unreadable,
    another type, empty)."""
    name = str(path)
    problem = file_stat_problem(path)
    if problem is not None:
        return None, [problem]
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        return None, [Problem(name, f"unsupported file type '{suffix}', expected one of .csv, .parquet")]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [_unreadable(name, exc)]
    if not raw.strip():
        return None, [Problem(name, "file is empty: expected a header row and at least one data row")]
    return raw, []


def parquet_frame(raw: bytes, name: str) -> tuple[TableSource | None, list[Problem]]:
    """A Parquet file's table as stored (its own types), rows numbered from 1."""
    try:
        import pyarrow.parquet as pq

        frame = pq.read_table(io.BytesIO(raw)).to_pandas()
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        return None, [Problem(name, f"not a readable Parquet file ({type(exc).__name__})")]
    if frame.empty:
        return None, [Problem(name, "file has no data rows")]
    dupes = duplicated_columns([str(c) for c in frame.columns])
    if dupes:
        return None, [dupes_problem(name, dupes)]
    frame.columns = [str(c).strip() for c in frame.columns]
    return TableSource(frame.reset_index(drop=True), 1, "rows"), []


def duplicated_columns(header: Sequence[str]) -> list[str]:
    """Column names that appear more than once once surrounding spaces are ignored."""
    stripped = [h.strip() for h in header]
    return sorted({h for h in stripped if stripped.count(h) > 1})


def dupes_problem(name: str, dupes: Sequence[str]) -> Problem:
    shown = ", ".join(f"'{d}'" for d in dupes)
    return Problem(name, f"column names appear more than once (ignoring surrounding spaces): {shown}; "
                         "rename or drop the extra column(s)")


def _csv_header(text: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True), [])
    except (csv.Error, StopIteration):
        return []


def csv_line_numbers(text: str, delimiter: str, rows: int) -> np.ndarray | None:
    """Each data record's first line in the file, when quoted line breaks or blank lines make it differ from
    ``position + 2`` (None otherwise, or when the csv module reads a different number of records than pandas)."""
    if '"' not in text and "\n\n" not in text and "\n\r\n" not in text:
        return None
    starts: list[int] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    try:
        previous = 0
        for record in reader:
            if record and (len(record) > 1 or record[0].strip()):
                starts.append(previous + 1)
            previous = reader.line_num
    except csv.Error:
        return None
    if len(starts) != rows + 1:  # the header plus every data record
        return None
    return np.asarray(starts[1:], dtype=np.int64)


def csv_frame(text: str, name: str, delimiter: str = ",") -> tuple[TableSource | None, list[Problem]]:
    """A CSV file's table with every value as text, rows numbered by their line (the header is line 1)."""
    dupes = duplicated_columns(_csv_header(text, delimiter))
    if dupes:  # pandas would rename the second 'amount' to 'amount.1' and read on
        return None, [dupes_problem(name, dupes)]
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, skipinitialspace=True, sep=delimiter)
    except pd.errors.ParserError as exc:
        return None, [Problem(name, f"is not a well-formed CSV table: {str(exc).strip()}")]
    except pd.errors.EmptyDataError:
        return None, [Problem(name, "file is empty: expected a header row and at least one data row")]
    except Exception as exc:  # the C parser raises bare errors for a few malformed inputs
        return None, [Problem(name, f"is not a well-formed CSV table ({type(exc).__name__}: {exc})")]
    if frame.empty:
        return None, [Problem(name, "file has a header but no data rows")]
    frame.columns = [str(c).strip() for c in frame.columns]
    dupes = duplicated_columns(list(frame.columns))
    if dupes:
        return None, [dupes_problem(name, dupes)]
    return TableSource(frame, 2, "lines", numbers=csv_line_numbers(text, delimiter, len(frame))), []


def _count(mask: np.ndarray | pd.Series) -> int:
    return int(np.asarray(mask, dtype=bool).sum())


def shown_values(values: pd.Series | None, positions: np.ndarray) -> tuple[str, ...]:
    """Up to MAX_VALUES_SHOWN distinct offending values (missing ones left out), each cut to 40 characters."""
    if values is None or not len(positions):
        return ()
    picked = values.iloc[positions]
    picked = picked[picked.notna()]
    text = pd.unique(picked.astype("str").str.strip().to_numpy())
    return tuple(v if len(v) <= 40 else v[:39] + "…" for v in text if v)[:MAX_VALUES_SHOWN]


def row_problems(file: str, col: str, msg: str, mask: np.ndarray | pd.Series, reader: TableSource,
              values: pd.Series | None = None) -> list[Problem]:
    """One problem per source file holding offending rows: count, the first row numbers and a few values."""
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    files = reader.files[positions] if reader.files is not None else np.full(len(positions), file, dtype=object)
    numbers = (reader.numbers[positions] if reader.numbers is not None
               else positions + reader.first_row_number)
    label = reader.column_label(col)
    out = []
    for name in pd.unique(files):
        here = files == name
        n = int(here.sum())
        rows = numbers[here][:MAX_ROWS_SHOWN]
        shown = ", ".join(str(int(r)) for r in rows)
        more = f" and {n - MAX_ROWS_SHOWN} more" if n > MAX_ROWS_SHOWN else ""
        out.append(Problem(str(name), f"{msg} in {n} row(s) ({reader.unit} {shown}{more})", column=label,
                           values=shown_values(values, positions[here])))
    return out


def _as_text(values: pd.Series) -> pd.Series:
    """Text view of a column; integral floats (Parquet ints with nulls) print without '.0'."""
    if pd.api.types.is_float_dtype(values.dtype):
        finite = values.dropna()
        if len(finite) and bool((finite == np.floor(finite)).all()):
            return values.map(lambda v: v if pd.isna(v) else str(int(v))).astype("str")
    if pd.api.types.is_string_dtype(values.dtype) or values.dtype == object:
        return values.astype("str").str.strip().replace("", np.nan)
    return values.astype("str")


def _coerce_column(
    values: pd.Series, spec: ColumnSpec, file: str, reader: TableSource, now: pd.Timestamp
) -> tuple[pd.Series, list[Problem]]:
    """Convert one column to its canonical type; report every value that does not fit."""
    problems: list[Problem] = []
    present = values.notna()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        present &= values.astype("str").str.strip().ne("")
    col = spec.name

    def report(message: str, mask: pd.Series) -> None:
        problems.extend(row_problems(file, col, message, mask, reader, values))

    if spec.type in ("string", "category"):
        out = _as_text(values)
        if spec.allowed is not None:
            lowered = out.str.lower()
            bad = present & ~lowered.isin(spec.allowed)
            if bad.any():
                report(f"expected one of {', '.join(spec.allowed)}", bad)
            out = lowered
    elif spec.type in ("int", "float"):
        if reader.parse_number is not None:
            numeric = reader.parse_number(values)
        elif pd.api.types.is_bool_dtype(values.dtype):
            numeric = pd.Series(np.nan, index=values.index)
        else:
            numeric = pd.to_numeric(values, errors="coerce")
        numeric = numeric.astype("float64")
        bad = present & (numeric.isna() | ~np.isfinite(numeric.fillna(0.0)))
        if bad.any():
            hint = f"; {reader.number_hint}" if reader.number_hint else ""
            report(f"expected a number ({spec.type}{hint})", bad)
        if spec.type == "int":
            huge = present & ~bad & (numeric.abs() >= INT64_LIMIT)
            if huge.any():  # pandas cannot hold it as an integer (a CSV typo, a Parquet uint64 maximum)
                report("whole number too large (must be below 9.2e18, the 64-bit integer limit)", huge)
                bad = bad | huge
            frac = present & ~bad & (numeric % 1 != 0)
            if frac.any():
                report("expected a whole number", frac)
        if spec.min_value is not None:
            low = present & ~bad & (numeric < spec.min_value)
            if low.any():
                what = "negative value" if spec.min_value == 0 else f"value below {spec.min_value}"
                report(f"{what} (must be >= {spec.min_value:g})", low)
        numeric = numeric.where(present & ~bad)
        out = numeric.round().astype("Int64") if spec.type == "int" else numeric
    elif spec.type == "bool":
        if pd.api.types.is_bool_dtype(values.dtype):
            out = values.astype("boolean")
        else:
            text = values.astype("str").str.strip().str.lower()
            is_true, is_false = text.isin(TRUE_WORDS), text.isin(FALSE_WORDS)
            bad = present & ~(is_true | is_false)
            if bad.any():
                report("expected true/false (or 1/0, yes/no)", bad)
            out = pd.Series(pd.NA, index=values.index, dtype="boolean")
            out[is_true] = True
            out[is_false] = False
    elif spec.type == "timestamp":
        if reader.parse_time is not None:
            parsed = reader.parse_time(values)
        elif pd.api.types.is_datetime64_any_dtype(values.dtype):
            parsed = values
            if getattr(parsed.dt, "tz", None) is not None:
                parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        else:
            text = values.astype("str").str.strip()
            parsed = pd.to_datetime(text.where(present), errors="coerce", format="ISO8601", utc=True)
            parsed = parsed.dt.tz_localize(None)
        parsed = parsed.astype("datetime64[us]")
        bad = present & parsed.isna()
        if bad.any():
            report(f"unparsable date/time ({reader.time_hint})", bad)
        future = present & ~bad & (parsed > now)
        if future.any():
            report(f"timestamp in the future (after {now:%Y-%m-%d %H:%M} UTC)", future)
        out = parsed
    else:  # pragma: no cover - the schema only declares the types above
        raise AssertionError(spec.type)

    if not spec.nullable:
        missing = ~present
        if missing.any():
            report("missing value (empty or NaN)", missing)
    return out, problems


def validate_frame(
    frame: pd.DataFrame,
    spec: TableSpec,
    file: str = "<frame>",
    *,
    now: pd.Timestamp | None = None,
    source: TableSource | None = None,
) -> tuple[pd.DataFrame, list[Problem]]:
    """Check a raw table against ``spec`` and return (typed table, problems).

    Columns not in the schema are kept unchanged (privacy tooling decides what to do with them).
    The typed table is only meaningful when ``problems`` is empty.
    """
    reader = source or TableSource(frame.reset_index(drop=True), 1, "rows")
    frame = reader.frame
    now = now if now is not None else _now_naive_utc()
    problems: list[Problem] = []
    columns = [str(c) for c in frame.columns]
    missing = [c for c in spec.required_columns if c not in columns]
    unknown = [c for c in columns if c not in spec.column_names]
    for name in missing:
        hint = difflib.get_close_matches(name, unknown, n=1, cutoff=0.6)
        did_you_mean = f"; found '{hint[0]}' -- misspelled?" if hint else ""
        problems.append(
            Problem(
                file,
                f"required column is missing (table '{spec.name}' needs "
                f"{', '.join(spec.required_columns)}){did_you_mean}",
                column=name,
            )
        )
    out = frame.copy()
    failed: set[str] = set()
    for col_spec in spec.columns:
        if col_spec.name not in columns:
            continue
        coerced, col_problems = _coerce_column(frame[col_spec.name], col_spec, file, reader, now)
        out[col_spec.name] = coerced
        problems.extend(col_problems)
        if col_problems:
            failed.add(col_spec.name)
    key_present = spec.key and all(k in columns for k in spec.key)
    if key_present and not failed & set(spec.key):
        problems.extend(duplicate_key_problems(out, spec, file, reader))
    return out, problems


def duplicate_key_problems(frame: pd.DataFrame, spec: TableSpec, file: str, reader: TableSource) -> list[Problem]:
    """Rows whose key repeats an earlier row's (the repeated keys are shown)."""
    keys = list(spec.key)
    dup = frame.duplicated(subset=keys, keep="first")
    if not dup.any():
        return []
    shown = frame[keys[0]].astype("str") if len(keys) == 1 else frame[keys].astype("str").agg(" + ".join, axis=1)
    label = ", ".join(reader.column_label(k) for k in keys)
    return row_problems(file, label, f"duplicate key ({' + '.join(keys)} must be unique)", dup, reader, shown)


def read_table(
    path: str | Path,
    table: str | TableSpec | None = None,
    *,
    encoding: str = "utf-8",
    now: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Read one partner file and return the validated, typed table.

    Raises :class:`DataValidationError` listing every problem; never writes anything.
    """
    path = Path(path)
    spec = _resolve_spec(path, table)
    if spec is None:
        raise DataValidationError(_unknown_table_problem(path))
    frame, problems = _read_and_check(path, spec, encoding, now)
    if problems:
        raise DataValidationError(problems)
    assert frame is not None
    return frame


def _resolve_spec(path: Path, table: str | TableSpec | None) -> TableSpec | None:
    if isinstance(table, TableSpec):
        return table
    if table is not None:
        if table not in TABLES:
            raise DataValidationError(
                Problem(str(path), f"unknown table '{table}', expected one of {', '.join(TABLES)}")
            )
        return TABLES[table]
    return table_for_path(path)


def _unknown_table_problem(path: Path) -> Problem:
    return Problem(
        str(path),
        f"cannot tell which table this is from its name; name it one of "
        f"{', '.join(t + '.csv' for t in TABLES)} (or .parquet)",
    )


def _read_and_check(
    path: Path, spec: TableSpec, encoding: str, now: pd.Timestamp | None
) -> tuple[pd.DataFrame | None, list[Problem]]:
    reader, problems = _read_raw(path, encoding)
    if reader is None:
        return None, problems
    frame, problems = validate_frame(reader.frame, spec, str(path), now=now, source=reader)
    return frame, problems


def iter_table_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """Expand folders (recursively) into the table files they hold; files are kept as given.

    Returns (files to check, files skipped). Inside a folder, data files whose name is not a
    canonical table (e.g. a generator's ``ground_truth/`` files) are skipped, not failed; a file named
    explicitly is always checked.
    """
    files: list[Path] = []
    skipped: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if looks_like_table_file(f):
                    files.append(f)
                elif f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES:
                    skipped.append(f)
        else:
            files.append(p)
    return files, skipped


def nothing_to_validate(found: Sequence[Path], folder: Path | None = None) -> str:
    """Why a folder has nothing to validate, and what to do: its own exports need a mapping."""
    if not found:
        return "no .csv or .parquet files found"
    names = ", ".join(f.name for f in found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    where = shlex.quote(str(folder)) if folder is not None else "FOLDER"
    return (f"found {len(found)} data file(s) ({names}) but none is named after a canonical table "
            f"({', '.join(TABLES)}); say what they hold in a mapping.toml: "
            f"'fedinsight partner map --suggest {where}' writes a draft to check")


def _stream_source(parquet: bool, frame: pd.DataFrame, numbers: np.ndarray) -> TableSource:
    return TableSource(frame, 1, "rows", numbers=numbers) if parquet else TableSource(frame, 2, "lines",
                                                                                         numbers=numbers)


def stream_check(path: Path, spec: TableSpec, *, encoding: str = "utf-8", now: pd.Timestamp | None = None,
                 block_bytes: int = BLOCK_BYTES) -> list[Problem]:
    """Validate a CSV or Parquet file batch by batch (about ``block_bytes`` of data each): every problem a whole
    read finds, with file lines (CSV) or row numbers (Parquet), holding one batch and an 8-byte hash per row (for
    the duplicate-key check) at a time."""
    name = str(path)
    parquet = path.suffix.lower() == ".parquet"
    problem = file_stat_problem(path)
    if problem is None and not os.access(path, os.R_OK):
        problem = _unreadable(name, PermissionError(errno.EACCES, "Permission denied"))
    if problem is not None:
        return [problem]
    try:
        header = parquet_header(path) if parquet else header_of(path, encoding)
    except LookupError:
        return [Problem(name, f"unknown text encoding '{encoding}'")]
    except Exception as exc:  # pyarrow raises several unrelated types (OSError among them) for a corrupt footer
        if parquet:
            return [Problem(name, f"not a readable Parquet file ({type(exc).__name__})")]
        if isinstance(exc, OSError):
            return [_unreadable(name, exc)]
        raise
    dupes = duplicated_columns(header)
    if dupes:
        return [dupes_problem(name, dupes)]
    now = now if now is not None else _now_naive_utc()
    per_batch = dataclasses.replace(spec, key=())  # keys are compared across batches below

    def batches() -> Iterator[tuple[pd.DataFrame, TableSource, list[Problem]]]:
        """(typed batch, where its rows are, the batch's problems), batch by batch."""
        read = (parquet_batches(path, block_bytes=block_bytes) if parquet
                else csv_batches(path, encoding=encoding, block_bytes=block_bytes))
        for frame, numbers in read:
            source = _stream_source(parquet, frame, numbers)
            typed, found = validate_frame(frame, per_batch, name, now=now, source=source)
            yield typed, source, found

    keys = list(spec.key)
    problems: list[Problem] = []
    hashes, keys_ok, rows = KeyHashes(), bool(keys), 0
    try:
        for typed, _, found in batches():
            rows += len(typed)
            problems += found
            keys_ok = keys_ok and all(k in typed.columns for k in keys) and not any(p.column in keys for p in found)
            if keys_ok:
                hashes.add(typed[keys])
    except Exception as exc:  # the C parser raises ParserError, UnicodeDecodeError and bare errors; pyarrow others
        if parquet:
            return [*merge_problems(problems), Problem(name, f"not a readable Parquet file ({type(exc).__name__})")]
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [*merge_problems(problems), Problem(name, f"is not a well-formed CSV table: {reason}")]
    if rows == 0:
        return [Problem(name, "file has no data rows" if parquet else "file has a header but no data rows")]
    problems = merge_problems(problems)
    suspects = hashes.suspects() if keys_ok else np.empty(0, dtype=np.uint64)
    if suspects.size:  # a repeated hash: compare the real keys of only those rows
        frames, lines = [], []
        for typed, source, _ in batches():
            hit = np.isin(KeyHashes.of(typed[keys]), suspects)
            frames.append(typed.loc[hit, keys])
            assert source.numbers is not None
            lines.append(source.numbers[hit])
        rows_hit = pd.concat(frames, ignore_index=True)
        problems += duplicate_key_problems(rows_hit, spec, name,
                                           _stream_source(parquet, rows_hit, np.concatenate(lines)))
    return problems


def _streams(path: Path, block_bytes: int) -> bool:
    """Whether ``path`` is validated in batches: a CSV file larger than ``block_bytes``, a Parquet file whose
    uncompressed data is (a corrupt footer: read whole, where the error is reported)."""
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return path.stat().st_size > block_bytes
    if suffix == ".parquet" and os.access(path, os.R_OK):
        try:
            return parquet_data_bytes(path) > block_bytes
        except Exception:  # noqa: BLE001 - the whole read reports a corrupt file with its own message
            return False
    return False


def validate_paths(
    paths: Sequence[str | Path], *, encoding: str = "utf-8", now: pd.Timestamp | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> tuple[list[Path], list[Problem]]:
    """Validate every table file under ``paths``; return (files checked, all problems found). A CSV file larger
    than ``block_bytes`` (a Parquet file whose uncompressed data is) is read in batches of that size
    (:func:`stream_check`)."""
    files, skipped = iter_table_files(paths)
    problems: list[Problem] = []
    if not files:
        folder = Path(paths[0]) if len(paths) == 1 and Path(paths[0]).is_dir() else None
        problems.append(Problem(", ".join(map(str, paths)), nothing_to_validate(skipped, folder)))
    for path in files:
        if not path.exists() and not path.is_symlink():
            problems.append(Problem(str(path), "file does not exist"))
            continue
        spec = table_for_path(path)
        if spec is None:
            problems.append(_unknown_table_problem(path))
            continue
        if _streams(path, block_bytes):
            problems.extend(stream_check(path, spec, encoding=encoding, now=now, block_bytes=block_bytes))
            continue
        _, file_problems = _read_and_check(path, spec, encoding, now)
        problems.extend(file_problems)
    return files, problems

"""Reading a partner's tables through its mapping: its own files in, canonical typed tables out, nothing written.

For each table of the mapping (:mod:`fedinsight.data.mapping`), in this order:

1. read every file its globs match (CSV in UTF-8 or GB18030, or Parquet) and check the mapped source columns
   exist in each; the files are concatenated, each row remembering its file and line;
2. take each canonical column from its source column; unmapped source columns are kept under their own
   names (the protection policy decides what happens to them), a mapped source column only under its
   canonical name;
3. apply the value maps (``是`` -> true, ``曝光`` -> exposure): a value the map does not cover is an error;
4. validate against the canonical schema with the mapping's readers: amounts with symbols and thousands
   separators, timestamps in the declared format, naive ones in the partner's time zone, all to naive UTC;
5. with ``group_by``, group order lines into one transaction per order: amount and quantity summed,
   timestamp the earliest line's, every other column the first line's non-empty value.

Every problem names the source file, the source column (``事件类型 (stage)``), the line numbers and up to five
offending values; problems of the mapping itself name the mapping file and the key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from fedinsight.core.errors import Problem
from fedinsight.data.mapping import PartnerMapping, TableMapping
from fedinsight.data.schema import TableSpec
from fedinsight.data.synonyms import best_header
from fedinsight.data.validate import (
    FALSE_WORDS,
    TRUE_WORDS,
    TableSource,
    csv_frame,
    parquet_frame,
    read_bytes,
    row_problems,
    shown_values,
    validate_frame,
)
from fedinsight.data.values import decode, number_hint, parse_number, parse_timestamps, timestamp_hint

SUM_WHEN_GROUPED = ("amount", "quantity")


@dataclass
class MappedTable:
    """One canonical table read through the mapping, with where each row came from."""

    name: str
    frame: pd.DataFrame  # typed canonical table
    source: TableSource  # per row: source file and line (an order's first line when lines were grouped)
    files: tuple[Path, ...]
    columns: dict[str, str]  # canonical -> source column


@dataclass
class MappedRead:
    """Every table a mapping reads, and every problem found (mapping problems are also in ``mapping_problems``)."""

    mapping: PartnerMapping
    tables: dict[str, MappedTable]
    problems: list[Problem]
    mapping_problems: list[Problem]

    @property
    def files(self) -> list[Path]:
        return [f for t in self.mapping.tables.values() for f in t.files]


def read_mapped(mapping: PartnerMapping, *, now: pd.Timestamp | None = None) -> MappedRead:
    """Read every table of ``mapping`` (see the module docstring); problems are collected, not raised."""
    tables: dict[str, MappedTable] = {}
    problems: list[Problem] = []
    mapping_problems: list[Problem] = []
    for name, table in mapping.tables.items():
        result, data_problems, own_problems = _read_table(mapping, table, now)
        problems += own_problems + data_problems
        mapping_problems += own_problems
        if result is not None and not data_problems and not own_problems:
            tables[name] = result
    return MappedRead(mapping, tables, problems, mapping_problems)


def _key(table: TableMapping, *parts: str) -> str:
    return ".".join(("tables", table.table, *parts))


def _read_file(mapping: PartnerMapping, table: TableMapping, path: Path) -> tuple[TableSource | None, list[Problem],
                                                                                  list[Problem]]:
    """(the file's raw table, data problems, mapping problems)."""
    raw, problems = read_bytes(path)
    if raw is None:
        return None, problems, []
    if path.suffix.lower() == ".parquet":
        source, problems = parquet_frame(raw, str(path))
        return source, problems, []
    decoded = decode(raw, table.encoding)
    if decoded.text is None:
        what = f"valid {table.encoding} text" if table.encoding else "UTF-8 or GB18030 text"
        key = _key(table, "encoding") if table.encoding and not table.implicit else "encoding"
        return None, [], [mapping.problem(
            key, f"{path.name} is not {what} ({decoded.error}); re-save it as UTF-8, or name its encoding in the "
                 f"mapping (e.g. encoding = \"latin-1\")")]
    source, problems = csv_frame(decoded.text, str(path), table.delimiter)
    return source, problems, []


@dataclass
class MissingColumn:
    """A column the mapping names that some of its files lack (one problem per key, naming every such file)."""

    source: str
    what: str
    files: list[str]
    columns: list[str]


def record_missing_columns(table: TableMapping, path: Path, columns: list[str],
                           missing: dict[str, MissingColumn]) -> bool:
    """Record each mapped source column, group_by column or value-mapped column this file lacks; True if none."""
    wanted = [(_key(table, "columns", c), s, "source column") for c, s in table.columns.items()]
    if table.group_by is not None:
        wanted.append((_key(table, "group_by"), table.group_by, "group_by column"))
    wanted += [(_key(table, "values", c), table.source(c), "column") for c in table.values if c not in table.columns]
    ok = True
    for key, source, what in wanted:
        if source not in columns:
            missing.setdefault(key, MissingColumn(source, what, [], columns)).files.append(path.name)
            ok = False
    return ok


def missing_column_problems(mapping: PartnerMapping, missing: dict[str, MissingColumn]) -> list[Problem]:
    """One problem per mapping key whose column some files lack, naming the files and the closest column name."""
    problems = []
    for key, m in missing.items():
        hint = difflib.get_close_matches(m.source, m.columns, n=1, cutoff=0.5)
        did = f"; did you mean '{hint[0]}'?" if hint else ""
        listed = ", ".join(m.columns[:30]) + (" ..." if len(m.columns) > 30 else "")
        problems.append(mapping.problem(key, f"{m.what} '{m.source}' is not a column of {', '.join(m.files)}{did} "
                                             f"(its columns: {listed})"))
    return problems


def canonical_columns(table: TableMapping, frame: pd.DataFrame) -> pd.DataFrame:
    """The file's columns under canonical names; unmapped ones under their own (unless a canonical one shadows it)."""
    out: dict[str, pd.Series] = {c: frame[s] for c, s in table.columns.items()}
    consumed = set(table.columns.values())
    if table.group_by is not None and "transaction_id" not in table.columns:
        out["transaction_id"] = frame[table.group_by]
        consumed.add(table.group_by)
    for column in frame.columns:
        if column not in consumed and column not in out:
            out[column] = frame[column]
    return pd.DataFrame(out, index=frame.index)


def _apply_value_maps(mapping: PartnerMapping, table: TableMapping, frame: pd.DataFrame,
                      source: TableSource) -> list[Problem]:
    problems = []
    for canonical, values in table.values.items():
        if canonical not in frame.columns:
            continue
        column = frame[canonical]
        text = column.astype("str").str.strip()
        present = column.notna() & text.ne("")
        mapped = text.map(values)
        if mapped.isna().any():  # "Yes" for "yes", "IMPRESSION" for "impression": case is not a different value
            folded = {k.casefold(): v for k, v in values.items()}
            mapped = mapped.where(mapped.notna(), text.str.casefold().map(folded))
        spec = table.spec.column(canonical)
        if spec.allowed is not None:
            canonical_already = text.str.lower().isin(spec.allowed)
        elif spec.type == "bool":
            canonical_already = text.str.lower().isin(TRUE_WORDS | FALSE_WORDS)
        else:
            canonical_already = pd.Series(False, index=frame.index)
        left = (present & mapped.isna() & ~canonical_already).to_numpy()
        if left.any():
            positions = np.flatnonzero(left)
            distinct = pd.unique(text.to_numpy()[positions])
            files = ", ".join(dict.fromkeys(Path(str(f)).name for f in source.files[positions]))  # type: ignore[index]
            where = f"column {table.source(canonical)} of {files}"
            problems.append(mapping.problem(
                _key(table, "values", canonical),
                f"leaves {len(distinct)} value(s) of {where} unmapped in {len(positions)} row(s) (lines "
                f"{', '.join(str(int(n)) for n in source.numbers[positions][:10])}); "  # type: ignore[index]
                f"add each to the map", values=shown_values(text, positions)))
        frame[canonical] = mapped.where(mapped.notna(), column)
    return problems


def _line_spec(spec: TableSpec) -> TableSpec:
    """The spec order lines are checked against: any column may be empty on a line (Shopify writes an order's
    total on its first line only); the order is checked against the full spec once grouped."""
    columns = tuple(replace(c, nullable=True) if c.name != "transaction_id" else c for c in spec.columns)
    return replace(spec, columns=columns, key=())


def _read_table(mapping: PartnerMapping, table: TableMapping,
                now: pd.Timestamp | None) -> tuple[MappedTable | None, list[Problem], list[Problem]]:
    """(the table, data problems, mapping problems)."""
    frames, files, numbers = [], [], []
    data_problems: list[Problem] = []
    own: list[Problem] = []
    units = set()
    missing: dict[str, MissingColumn] = {}
    for path in table.files:
        raw, problems, mapping_problems = _read_file(mapping, table, path)
        data_problems += problems
        own += mapping_problems
        if raw is None:
            continue
        columns = [str(c) for c in raw.frame.columns]
        if not table.implicit and not record_missing_columns(table, path, columns, missing):
            continue
        frames.append(canonical_columns(table, raw.frame))
        files.append(np.full(len(raw.frame), str(path), dtype=object))
        numbers.append(raw.numbers if raw.numbers is not None else np.arange(len(raw.frame)) + raw.first_row_number)
        units.add(raw.unit)
    own += missing_column_problems(mapping, missing)
    if not frames or data_problems or own:
        return None, data_problems, own
    frame = pd.concat(frames, ignore_index=True, sort=False)
    labels = {c: table.source(c) for c in table.spec.column_names if table.source(c) != c}
    source = TableSource(frame, 2, "lines" if units == {"lines"} else "rows", np.concatenate(files),
                         np.concatenate(numbers), labels, partial(parse_number, decimal=table.decimal),
                         number_hint(table.decimal), partial(parse_timestamps, fmt=table.timestamp_format,
                                                             timezone=mapping.timezone),
                         timestamp_hint(table.timestamp_format, mapping.timezone))
    own += _apply_value_maps(mapping, table, frame, source)
    missing = [c for c in table.spec.required_columns if c not in frame.columns]
    if missing and not table.implicit:
        headers = [c for c in frame.columns if c not in table.spec.column_names]
        for canonical in missing:
            guess = best_header(canonical, headers)
            example = f"{canonical} = \"{guess}\"" if guess else f"{canonical} = \"<source column>\""
            own.append(mapping.problem(_key(table, "columns"), f"maps no source column to the required column "
                                                               f"'{canonical}'; add e.g. {example}"))
    if own:
        return None, data_problems, own
    first_file = str(table.files[0])
    spec = table.spec
    if table.group_by is None:
        typed, problems = validate_frame(frame, spec, first_file, now=now, source=source)
        result = MappedTable(table.table, typed, source, table.files, labels)
        return result, problems, own
    typed, problems = validate_frame(frame, _line_spec(spec), first_file, now=now, source=source)
    if problems:
        return None, problems, own
    return _group_lines(table, typed, source, labels, now)


def _group_lines(table: TableMapping, lines: pd.DataFrame, source: TableSource, labels: dict[str, str],
                 now: pd.Timestamp | None) -> tuple[MappedTable | None, list[Problem], list[Problem]]:
    """One transaction per order (see the module docstring); problems are reported at each order's first line."""
    key = "transaction_id" if table.source("transaction_id") == table.group_by else str(table.group_by)
    first = np.flatnonzero(~lines.duplicated(subset=[key]).to_numpy())
    problems: list[Problem] = []
    customers = lines.groupby(key, sort=False)["customer_id"].nunique()
    if (customers > 1).any():
        mixed = lines[key].isin(customers.index[customers > 1]).to_numpy()
        problems += row_problems(str(table.files[0]), key, "lines of one order name different customers", mixed,
                                 source, lines[key].astype("str"))
    grouped = lines.groupby(key, sort=False)
    how = {c: ("sum" if c in SUM_WHEN_GROUPED else "min" if c == "timestamp" else "first")
           for c in lines.columns if c != key}
    orders = grouped.agg(how).reset_index()
    for column in SUM_WHEN_GROUPED:  # an order all of whose lines leave the column empty stays empty
        if column in orders.columns:
            counted = grouped[column].count().to_numpy()
            orders[column] = orders[column].where(counted > 0)
    orders = orders[[c for c in lines.columns if c in orders.columns]]
    order_source = TableSource(orders, source.first_row_number, source.unit, source.files[first],  # type: ignore[index]
                               source.numbers[first], labels)  # type: ignore[index]
    typed, more = validate_frame(orders, table.spec, str(table.files[0]), now=now, source=order_source)
    problems += more
    return MappedTable(table.table, typed, order_source, table.files, labels), problems, []

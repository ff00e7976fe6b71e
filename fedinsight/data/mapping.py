"""A partner's mapping: how its own exports become the canonical tables (``mapping.toml``, docs/data.md).

Why a mapping rather than a conversion script: the partner's files stay exactly as its systems export them
(``订单明细_2024.csv`` with ``订单编号``, ``下单时间 2024/01/16 13:32:00``, ``实付金额 ¥1,204.50``), and
every read applies the mapping on the fly -- nothing is rewritten or copied, a new month's export is picked up
by its glob, and problems are reported in the partner's own file and column names.

This module reads and checks the mapping file itself (keys, tables, columns, time zone, currency, encoding,
globs); :mod:`fedinsight.data.mapped` reads the tables through it. Any mistake is one
:class:`~fedinsight.core.errors.MappingError` listing every problem, each naming the mapping file and the key.
"""

from __future__ import annotations

import codecs
import difflib
import glob
import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fedinsight.core.errors import MappingError, Problem
from fedinsight.data.currency import currency_codes
from fedinsight.data.schema import SUPPORTED_SUFFIXES, TABLES, TableSpec
from fedinsight.data.values import DECIMAL_MARKS

MAPPING_FILE = "mapping.toml"
TOP_KEYS: tuple[str, ...] = ("timezone", "currency", "encoding", "decimal", "delimiter", "tables")
TABLE_KEYS: tuple[str, ...] = ("files", "columns", "values", "group_by", "timestamp_format", "encoding", "decimal",
                               "delimiter")
GROUPABLE = ("transactions",)
"""Tables whose rows may be order lines (``group_by``): a transaction is one order, however many lines it has."""


@dataclass(frozen=True)
class TableMapping:
    """How one canonical table is read from a partner's files."""

    table: str
    files: tuple[Path, ...]  # the files its globs matched, in order (several are concatenated)
    globs: tuple[str, ...]
    columns: dict[str, str] = field(default_factory=dict)  # canonical column -> source column
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # canonical column -> {source: canonical}
    group_by: str | None = None  # a source column: its rows are lines of one transaction
    timestamp_format: str | None = None
    encoding: str | None = None  # None: UTF-8 (BOM or not), else GB18030
    decimal: str = "."
    delimiter: str = ","
    implicit: bool = False  # a canonical-named file beside the mapping, read without a [tables.X] section

    @property
    def spec(self) -> TableSpec:
        return TABLES[self.table]

    def source(self, canonical: str) -> str:
        """The source column a canonical column is read from (its own name when not mapped)."""
        if canonical in self.columns:
            return self.columns[canonical]
        if canonical == "transaction_id" and self.group_by is not None:
            return self.group_by
        return canonical


@dataclass(frozen=True)
class PartnerMapping:
    """A partner's ``mapping.toml``: its time zone, currency and how each table is read."""

    path: Path
    tables: dict[str, TableMapping]
    timezone: str = "UTC"
    currency: str | None = None
    digest: str = ""

    @property
    def folder(self) -> Path:
        """Where its globs are relative to (the mapping file's folder)."""
        return self.path.parent

    @property
    def fingerprint(self) -> str:
        """Changes when the mapping, the set of files it reads or any of those files changes (the data view's
        cache key: a new month's export, or rows appended to one, are read by the next job). Each file counts with
        its inode, size, modification and change times: a consent flipped in place keeps the size, a tool may put
        the modification time back, but nobody can set the change time back (an atomic replace moves the inode)."""
        files = []
        for f in (f for t in self.tables.values() for f in t.files):
            st = f.stat() if f.exists() else None
            files.append(f"{f}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}" if st else str(f))
        return hashlib.sha256("\n".join([self.digest, *files]).encode()).hexdigest()[:16]

    def problem(self, key: str, message: str, *, values: tuple[str, ...] = ()) -> Problem:
        return Problem(str(self.path), f"key '{key}': {message}", values=values)


def find_mapping(folder: str | Path, explicit: str | Path | None = None) -> PartnerMapping | None:
    """``explicit`` if given, else ``<folder>/mapping.toml`` if present, else None (canonical file names)."""
    if explicit is not None:
        return load_mapping(explicit)
    candidate = Path(folder) / MAPPING_FILE
    return load_mapping(candidate) if candidate.is_file() else None


def has_mapping(folder: Path) -> bool:
    return (folder / MAPPING_FILE).is_file()


def load_mapping(path: str | Path) -> PartnerMapping:
    """Read and check a mapping file: one :class:`MappingError` with every problem, or the mapping."""
    path = Path(path).absolute()
    if not path.is_file():
        raise MappingError(Problem(str(path), "mapping file does not exist; write a draft with "
                                              "'fedinsight partner map --suggest FOLDER'"))
    raw = path.read_bytes()
    try:
        doc = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise MappingError(Problem(str(path), "is not UTF-8 text; save the mapping file as UTF-8")) from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(Problem(str(path), f"is not valid TOML ({exc})")) from None
    return _Checker(path, doc, hashlib.sha256(raw).hexdigest()).mapping()


def _close(word: str, choices: Any) -> str:
    hint = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


class _Checker:
    """Collects every problem of one mapping file, then builds the mapping or raises."""

    def __init__(self, path: Path, doc: dict[str, Any], digest: str) -> None:
        self.path, self.doc, self.digest = path, doc, digest
        self.problems: list[Problem] = []

    def bad(self, key: str, message: str) -> None:
        self.problems.append(Problem(str(self.path), f"key '{key}': {message}"))

    def unknown_keys(self, where: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                full = f"{where}.{key}" if where else key
                self.bad(full, f"unknown key{_close(key, known)}; known keys here: {', '.join(known)}")

    def text(self, key: str, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.bad(key, f"must be a non-empty text in quotes (got {value!r})")
            return None
        return value.strip()

    def mapping(self) -> PartnerMapping:
        doc = self.doc
        self.unknown_keys("", doc, TOP_KEYS)
        timezone = self.timezone(doc.get("timezone"))
        currency = self.currency(doc.get("currency"))
        encoding = self.encoding("encoding", doc.get("encoding"))
        decimal = self.decimal("decimal", doc.get("decimal", "."))
        delimiter = self.delimiter("delimiter", doc.get("delimiter", ","))
        sections = doc.get("tables", {})
        if not isinstance(sections, dict):
            self.bad("tables", "must be a table of [tables.<name>] sections")
            sections = {}
        tables: dict[str, TableMapping] = {}
        for name, section in sections.items():
            if name not in TABLES:
                self.bad(f"tables.{name}", f"unknown table{_close(name, TABLES)}; tables are {', '.join(TABLES)}")
                continue
            if not isinstance(section, dict):
                self.bad(f"tables.{name}", "must be a [tables.<name>] section")
                continue
            table = self.table(name, section, encoding, decimal, delimiter)
            if table is not None:
                tables[name] = table
        for name in TABLES:  # canonical-named files beside the mapping are read too, with its time zone
            if name not in tables and not self.problems:
                files = tuple(self.path.parent / f"{name}{suffix}" for suffix in SUPPORTED_SUFFIXES
                              if (self.path.parent / f"{name}{suffix}").is_file())
                if files:
                    tables[name] = TableMapping(name, files, tuple(f.name for f in files), encoding=encoding,
                                                decimal=decimal, delimiter=delimiter, implicit=True)
        if not self.problems and not tables:
            self.problems.append(Problem(str(self.path), "names no tables: add a [tables.<name>] section with files "
                                                         "(e.g. [tables.transactions] files = [\"orders_*.csv\"])"))
        if self.problems:
            raise MappingError(self.problems)
        return PartnerMapping(self.path, tables, timezone or "UTC", currency, self.digest)

    def timezone(self, value: Any) -> str | None:
        name = self.text("timezone", value)
        if name is None:
            return None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.bad("timezone", f"unknown time zone '{name}'{_close(name, available_timezones())}; use an IANA "
                                 "name such as Asia/Shanghai, America/New_York, Europe/Berlin or UTC")
            return None
        return name

    def currency(self, value: Any) -> str | None:
        code = self.text("currency", value)
        if code is None:
            return None
        if code.upper() in currency_codes():
            return code.upper()
        hint = {"RMB": "CNY", "YUAN": "CNY", "US$": "USD", "$": "USD", "€": "EUR", "£": "GBP", "¥": "CNY",
                "NTD": "TWD", "HK$": "HKD"}.get(code.upper())
        suggestion = f" (did you mean '{hint}'?)" if hint else _close(code.upper(), currency_codes())
        self.bad("currency", f"'{code}' is not an ISO 4217 currency code{suggestion}; e.g. CNY, USD, EUR")
        return None

    def encoding(self, key: str, value: Any) -> str | None:
        name = self.text(key, value)
        if name is None:
            return None
        try:
            codecs.lookup(name)
        except LookupError:
            self.bad(key, f"unknown text encoding '{name}'; e.g. utf-8, utf-8-sig, gb18030, latin-1 (leave it out to "
                          "read UTF-8 or GB18030 automatically)")
            return None
        return name

    def decimal(self, key: str, value: Any) -> str:
        if value not in DECIMAL_MARKS:
            self.bad(key, f"the decimal mark must be \".\" or \",\" (got {value!r})")
            return "."
        return str(value)

    def delimiter(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) != 1 or value in "\"\r\n":
            self.bad(key, f"the column delimiter must be one character such as \",\", \";\" or \"\\t\" (got {value!r})")
            return ","
        return value

    def table(self, name: str, section: dict[str, Any], encoding: str | None, decimal: str,
              delimiter: str) -> TableMapping | None:
        where = f"tables.{name}"
        spec = TABLES[name]
        self.unknown_keys(where, section, TABLE_KEYS)
        globs = section.get("files")
        if isinstance(globs, str):
            globs = [globs]
        if not isinstance(globs, list) or not globs or not all(isinstance(g, str) and g.strip() for g in globs):
            self.bad(f"{where}.files", "must list the table's files, e.g. files = [\"订单明细_*.csv\"] (globs "
                                       "relative to the mapping file)")
            globs = []
        files = self.files(f"{where}.files", globs)
        columns: dict[str, str] = {}
        raw_columns = section.get("columns", {})
        if not isinstance(raw_columns, dict):
            self.bad(f"{where}.columns", "must be a [tables.<name>.columns] section: canonical = \"source column\"")
            raw_columns = {}
        for canonical, source in raw_columns.items():
            key = f"{where}.columns.{canonical}"
            if canonical not in spec.column_names:
                self.bad(key, f"'{canonical}' is not a column of the canonical {name} table"
                              f"{_close(canonical, spec.column_names)}; its columns: {', '.join(spec.column_names)}")
                continue
            text = self.text(key, source)
            if text is not None:
                columns[canonical] = text
        values = self.value_maps(where, spec, section.get("values", {}))
        group_by = self.text(f"{where}.group_by", section.get("group_by"))
        if group_by is not None and name not in GROUPABLE:
            self.bad(f"{where}.group_by", f"only {', '.join(GROUPABLE)} can group lines into one row (an order)")
            group_by = None
        fmt = self.text(f"{where}.timestamp_format", section.get("timestamp_format"))
        if fmt is not None and "%" not in fmt:
            self.bad(f"{where}.timestamp_format", f"'{fmt}' has no strftime directives; e.g. \"%Y/%m/%d %H:%M:%S\"")
        own_encoding = self.encoding(f"{where}.encoding", section.get("encoding"))
        own_decimal = self.decimal(f"{where}.decimal", section.get("decimal", decimal))
        own_delimiter = self.delimiter(f"{where}.delimiter", section.get("delimiter", delimiter))
        return TableMapping(name, files, tuple(globs), columns, values, group_by, fmt, own_encoding or encoding,
                            own_decimal, own_delimiter)

    def files(self, key: str, globs: list[str]) -> tuple[Path, ...]:
        found: list[Path] = []
        base = self.path.parent
        for pattern in globs:
            full = pattern if os.path.isabs(pattern) else str(base / pattern)
            hits = sorted(Path(p) for p in glob.glob(full, recursive=True)
                          if Path(p).is_file() and not Path(p).name.startswith(".") and Path(p) != self.path)
            if not hits:
                self.bad(key, f"\"{pattern}\" matches no file in {base if not os.path.isabs(pattern) else '/'}")
            found += [h for h in hits if h not in found]
        return tuple(found)

    def value_maps(self, where: str, spec: TableSpec, raw: Any) -> dict[str, dict[str, str]]:
        if not isinstance(raw, dict):
            self.bad(f"{where}.values", "must hold [tables.<name>.values.<column>] sections: \"source value\" = value")
            return {}
        out: dict[str, dict[str, str]] = {}
        for canonical, table in raw.items():
            key = f"{where}.values.{canonical}"
            if canonical not in spec.column_names:
                self.bad(key, f"'{canonical}' is not a column of the canonical {spec.name} table"
                              f"{_close(canonical, spec.column_names)}")
                continue
            if not isinstance(table, dict) or not table:
                self.bad(key, "must map source values to canonical ones, e.g. \"是\" = true")
                continue
            col = spec.column(canonical)
            mapped: dict[str, str] = {}
            for source, value in table.items():
                text = _value_text(value)
                if text is None:
                    self.bad(f"{key}.{source}", f"must be text, a number or true/false (got {value!r})")
                    continue
                if col.allowed is not None and text.lower() not in col.allowed:
                    self.bad(f"{key}.\"{source}\"", f"\"{text}\" is not a {canonical}; use one of "
                                                     f"{', '.join(col.allowed)}")
                    continue
                if col.type == "bool" and text not in ("true", "false"):
                    self.bad(f"{key}.\"{source}\"", f"{canonical} values map to true or false (got {value!r})")
                    continue
                mapped[str(source).strip()] = text.lower() if col.allowed is not None else text
            out[canonical] = mapped
        return out


def _value_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None

"""What personal data a partner's folder holds, for the starter policy ``partner init`` writes.

Why a module of its own: the check has two routes and choosing between them is folder knowledge. A plain folder
whose canonical tables are all Parquet is scanned out of core, table by table
(:func:`fedinsight.privacy.pii_stream.scan_parquet`: memory and time bounded whatever its size); any other folder
(CSV read as text and typed by the validating reader, or a partner's own exports read through its mapping) is
loaded and scanned whole in pandas, since its findings depend on those types and names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fedinsight.core.errors import ProtectionPolicyError
from fedinsight.data.federation import load_partner_folder
from fedinsight.data.mapping import has_mapping
from fedinsight.data.schema import SCHEMA_COLUMNS
from fedinsight.data.validate import table_for_path
from fedinsight.privacy.pii import PiiFinding, scan_tables


def folder_findings(folder: Path, *, mapping: str | Path | None = None) -> tuple[
        list[PiiFinding], dict[str, tuple[int, int]], Mapping[str, Mapping[str, str]] | None]:
    """The PII findings of one partner's folder (read through ``mapping``, else its ``mapping.toml`` if present);
    for each table read on part of its rows, (rows read, rows held); and a mapped partner's ``meta["columns"]``
    (table -> canonical -> source column), ``None`` for a folder without a mapping."""
    streamed = _streamed_findings(folder) if mapping is None and not has_mapping(folder) else None
    if streamed is not None:
        return *streamed, None
    partners = load_partner_folder(folder, mapping=mapping)
    if len(partners) != 1:
        raise ProtectionPolicyError(f"{folder} holds {len(partners)} partners; run init in each partner's folder")
    data = next(iter(partners.values()))
    sources = data.meta.get("columns")
    return (scan_tables(data.tables(), schema=SCHEMA_COLUMNS),  # type: ignore[arg-type]
            {}, sources if isinstance(sources, dict) else None)


def _parquet_tables(folder: Path) -> dict[str, Path] | None:
    """The canonical tables of a plain folder when every one is Parquet (a file or a directory of files); ``None``
    when any is CSV (read as text and typed by the validating reader: its findings depend on those types)."""
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        spec = table_for_path(entry)
        if spec is None or entry.name.startswith("."):
            continue
        if entry.is_dir() and any(entry.rglob("*.parquet")) or entry.suffix.lower() == ".parquet":
            found[spec.name] = entry
        elif entry.is_file() and entry.suffix.lower() in (".csv", ".tsv", ".txt"):
            return None
    return found or None


def _streamed_findings(folder: Path) -> tuple[list[PiiFinding], dict[str, tuple[int, int]]] | None:
    """The PII findings of a plain Parquet folder, each table scanned out of core
    (:func:`~fedinsight.privacy.pii_stream.scan_parquet`), and (rows read, rows held) for each table read on part
    of its rows. ``None``: not such a folder."""
    from fedinsight.privacy.pii_stream import scan_parquet

    tables = _parquet_tables(folder)
    if tables is None:
        return None
    findings: list[PiiFinding] = []
    sampled: dict[str, tuple[int, int]] = {}
    for name, path in tables.items():
        found, part = scan_parquet(name, path, schema_columns=SCHEMA_COLUMNS.get(name, ()))
        findings += found
        if part is not None:
            sampled[name] = part
    return findings, sampled

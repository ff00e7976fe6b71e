"""A federation: the partners of a run, each with its own canonical tables.

``--dataset NAME|PATH`` everywhere in the CLI resolves here: a built-in name (cdnow, movielens-100k,
synthetic) is loaded and split into simulated partners; a PATH is a folder of partner folders (any names):
each holds canonical-named files (as ``fedinsight data synth`` writes them) or a ``mapping.toml`` saying how
its own exports are read (:mod:`fedinsight.data.mapping`). Every file is validated, with every problem of every
partner reported at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError, DataValidationError, MappingError, Problem
from fedinsight.data.loaders import cdnow_customers, load_cdnow, load_movielens_100k
from fedinsight.data.mapped import read_mapped
from fedinsight.data.mapped_stream import stream_table, streamable
from fedinsight.data.mapping import PartnerMapping, find_mapping, has_mapping, load_mapping
from fedinsight.data.partition import (
    PARTITION_SCHEMES,
    dirichlet_partition,
    id_range_key,
    iid_partition,
    natural_partition,
    split_partner_tables,
    zip_region,
)
from fedinsight.data.schema import SUPPORTED_SUFFIXES, TABLES, PartnerData
from fedinsight.data.stream import BLOCK_BYTES
from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.data.validate import (
    TableSource,
    _read_and_check,
    looks_like_table_file,
    nothing_to_validate,
    row_problems,
    table_for_path,
    validate_paths,
)

BUILTIN_DATASETS: tuple[str, ...] = ("cdnow", "movielens-100k", "synthetic")
CDNOW_CALIBRATION_END = pd.Timestamp("1997-09-30 23:59:59")


@dataclass(frozen=True)
class PartitionSpec:
    """How a pooled built-in dataset is split into simulated partners."""

    partners: int = 3
    scheme: str = "iid"
    alpha: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scheme not in (*PARTITION_SCHEMES, "zip"):
            raise ConfigError(f"unknown partition '{self.scheme}', expected one of iid, dirichlet, natural, zip")


def cdnow_repurchase_label(transactions: pd.DataFrame) -> pd.Series:
    """Per customer: bought again after the calibration period (Fader-Hardie-Lee split). Indexed by id."""
    later = transactions.loc[transactions["timestamp"] > CDNOW_CALIBRATION_END, "customer_id"].unique()
    ids = pd.Series(sorted(transactions["customer_id"].unique()))
    return pd.Series(ids.isin(later).to_numpy(), index=ids.to_numpy())


def _assign(ids: pd.Series, spec: PartitionSpec, *, labels: np.ndarray | None, natural_keys: np.ndarray) -> np.ndarray:
    if spec.scheme == "iid":
        return iid_partition(len(ids), spec.partners, spec.seed)
    if spec.scheme == "dirichlet":
        return dirichlet_partition(labels, spec.partners, spec.alpha, spec.seed, num_customers=len(ids),
                                   min_partition_size=min(10, max(1, len(ids) // (2 * spec.partners))))
    return natural_partition(natural_keys, spec.partners)


def load_builtin_federation(
    name: str, spec: PartitionSpec, *, synthetic_customers: int = 5_000
) -> dict[str, PartnerData]:
    """Load a built-in dataset and split it into ``spec.partners`` simulated partners."""
    if name == "cdnow":
        tx = load_cdnow()
        customers = cdnow_customers(tx)
        ids = customers["customer_id"]
        label = cdnow_repurchase_label(tx).reindex(ids.to_numpy()).to_numpy()
        assignment = _assign(ids, spec, labels=label, natural_keys=id_range_key(ids))
        tables = {"customers": customers, "transactions": tx}
    elif name == "movielens-100k":
        inter, users, items = load_movielens_100k()
        ids = users["customer_id"]
        assignment = _assign(
            ids, spec, labels=users["occupation"].to_numpy(), natural_keys=zip_region(users["zip_code"])
        )
        tables = {"customers": users, "interactions": inter, "items": items}
    elif name == "synthetic":
        frames, _truth = generate_partner_frames(
            SynthConfig(customers=synthetic_customers, partners=1, seed=spec.seed, offers=True)
        )
        tables = next(iter(frames.values()))
        customers = tables["customers"]
        ids = customers["customer_id"]
        assignment = _assign(ids, spec, labels=customers["region"].to_numpy(),
                             natural_keys=customers["region"].to_numpy())
    else:
        raise ConfigError(f"unknown dataset '{name}', expected one of {', '.join(BUILTIN_DATASETS)} or a folder")
    if spec.scheme in ("natural", "zip") and len(np.unique(assignment)) < spec.partners:
        raise ConfigError(f"natural partition of {name} yields fewer than {spec.partners} partners")
    partners = split_partner_tables(tables, ids.to_numpy(), assignment)
    for data in partners.values():
        data.meta.update({"dataset": name, "partition": spec.scheme, "seed": spec.seed})
    return partners


def _holds_partner_data(folder: Path) -> bool:
    return has_mapping(folder) or any(looks_like_table_file(f) for f in folder.iterdir())


def partner_folders(root: Path) -> list[Path]:
    """The partner folders under ``root``, in name order, whatever they are called: every sub-folder holding a
    ``mapping.toml`` or at least one table file (hidden folders and folders without tables, e.g. a generator's
    ground truth, are not partners); ``[root]`` if ``root`` holds a mapping or table files itself (one partner)."""
    root = Path(root)
    if has_mapping(root):
        return [root]
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    with_tables = [d for d in subdirs if _holds_partner_data(d)]
    if with_tables:
        return with_tables
    if any(looks_like_table_file(f) for f in root.iterdir()):
        return [root]
    return []


def unmapped_folders(root: Path) -> list[Problem]:
    """Sub-folders of data files that are not partner folders, next to partners with a mapping (a partner whose
    mapping.toml is missing would otherwise silently drop out of a federation of own exports)."""
    root = Path(root)
    folders = partner_folders(root) if root.is_dir() else []
    if not any(has_mapping(d) for d in folders) or folders == [root]:
        return []
    problems = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p not in folders):
        found = [f for f in sorted(d.rglob("*")) if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES]
        if found:
            problems.append(Problem(str(d), nothing_to_validate(found, d)))
    return problems


def _canonical_tables(folder: Path, encoding: str) -> tuple[dict[str, tuple[pd.DataFrame, TableSource]],
                                                            list[Path], list[Problem]]:
    """The tables of a folder of canonical-named files: (table -> (typed frame, its rows' source), files, problems)."""
    tables: dict[str, tuple[pd.DataFrame, TableSource]] = {}
    seen: dict[str, Path] = {}
    problems: list[Problem] = []
    for f in sorted(folder.iterdir()):
        spec = table_for_path(f) if looks_like_table_file(f) else None
        if spec is None:
            continue
        if spec.name in seen:
            problems.append(Problem(str(f), f"a second '{spec.name}' table (first: {seen[spec.name].name})"))
            continue
        seen[spec.name] = f
        frame, file_problems = _read_and_check(f, spec, encoding, None)
        problems.extend(file_problems)
        if not file_problems and frame is not None:
            csv = f.suffix.lower() == ".csv"
            tables[spec.name] = (frame, TableSource(frame, 2 if csv else 1, "lines" if csv else "rows",
                                                    np.full(len(frame), str(f), dtype=object)))
    return tables, list(seen.values()), problems


@dataclass
class PartnerRead:
    """One partner folder as read: its data (complete only without problems), the files read, the problems."""

    data: PartnerData
    files: list[Path]
    problems: list[Problem]
    mapping_problems: list[Problem]


def read_partner(folder: Path, *, encoding: str = "utf-8", mapping: PartnerMapping | None = None,
                 dataset: str | None = None) -> PartnerRead:
    """Read one partner's folder -- through its mapping when it has one -- and check it; nothing is raised."""
    meta: dict[str, object] = {"dataset": dataset or str(folder), "source": str(folder), "timezone": "UTC",
                               "currency": None}
    data = PartnerData(partner_id=folder.name, meta=meta)
    if mapping is None:
        tables, files, problems = _canonical_tables(folder, encoding)
        mapping_problems: list[Problem] = []
    else:
        read = read_mapped(mapping)
        tables = {name: (t.frame, t.source) for name, t in read.tables.items()}
        files, problems, mapping_problems = read.files, read.problems, read.mapping_problems
        meta.update({"timezone": mapping.timezone, "currency": mapping.currency, "mapping": str(mapping.path),
                     "columns": {name: dict(t.columns) for name, t in read.tables.items()}})
    for name, (frame, _source) in tables.items():
        setattr(data, name, frame)
    if data.customers is not None:
        known = data.customers["customer_id"]
        for table in ("transactions", "interactions", "events"):
            if table not in tables:
                continue
            frame, source = tables[table]
            unknown = ~frame["customer_id"].isin(known)
            if unknown.any():
                problems = problems + row_problems(str(files[0]), "customer_id", "customer_id not in this partner's "
                                                   "customers table", unknown, source, frame["customer_id"])
    return PartnerRead(data, files, problems, mapping_problems)


def _raise(problems: list[Problem], mapping_problems: list[Problem]) -> None:
    if mapping_problems:
        raise MappingError(problems)
    if problems:
        raise DataValidationError(problems)


def load_partner_folder(path: str | Path, *, encoding: str = "utf-8",
                        mapping: str | Path | None = None) -> dict[str, PartnerData]:
    """Load and validate a folder of partner data: ``ROOT/<partner>/`` with canonical-named table files
    (``transactions.csv`` ...) or a ``mapping.toml`` saying how the partner's own files are read.

    A folder holding a mapping or table files directly is one partner named after the folder; ``mapping`` (a
    file) reads ``path`` as one partner through it. Raises one :class:`DataValidationError` (a
    :class:`MappingError` when the mapping does not fit) listing every problem in every file; returns nothing
    partial.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataValidationError(Problem(str(root), "is not a folder of partner data"))
    dirs = [root] if mapping is not None else partner_folders(root)
    if not dirs:
        found = [f for f in sorted(root.rglob("*")) if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES]
        if found:
            raise DataValidationError(Problem(str(root), nothing_to_validate(found, root)))
        raise DataValidationError(
            Problem(str(root), f"no partner tables found; expected sub-folders with {', '.join(TABLES)} files "
                               "or a mapping.toml")
        )
    problems: list[Problem] = unmapped_folders(root) if mapping is None else []
    mapping_problems: list[Problem] = []
    partners: dict[str, PartnerData] = {}
    for d in dirs:
        try:
            partner_mapping = find_mapping(d, mapping)
        except MappingError as exc:
            problems += exc.problems
            mapping_problems += exc.problems
            continue
        read = read_partner(d, encoding=encoding, mapping=partner_mapping, dataset=str(root))
        problems += read.problems
        mapping_problems += read.mapping_problems
        partners[d.name] = read.data
    _raise(problems, mapping_problems)
    return partners


def validate_mapped_folder(folder: Path, mapping: PartnerMapping, *, encoding: str = "utf-8",
                           block_bytes: int = BLOCK_BYTES) -> tuple[list[Path], list[Problem], list[Problem]]:
    """Check one mapped partner folder as :func:`read_partner` does, reading the large tables the mapping allows
    in batches (:mod:`fedinsight.data.mapped_stream`). Returns (files, problems, mapping problems)."""
    big = [name for name, table in mapping.tables.items() if streamable(name, table, block_bytes)]
    rest = dataclasses.replace(mapping, tables={n: t for n, t in mapping.tables.items() if n not in big})
    read = read_partner(folder, encoding=encoding, mapping=rest)
    files, problems, mapping_problems = read.files, list(read.problems), list(read.mapping_problems)
    known = read.data.customers["customer_id"] if read.data.customers is not None else None
    first_file = str(next(f for t in mapping.tables.values() for f in t.files)) if big else ""
    for name in big:
        table = mapping.tables[name]
        files += list(table.files)
        data, own = stream_table(mapping, table, block_bytes=block_bytes, known_customers=known,
                                 first_file=first_file, now=None)
        problems += own + data
        mapping_problems += own
    return files, problems, mapping_problems


def check_paths(paths: list[Path], *, encoding: str = "utf-8", mapping: str | Path | None = None,
                block_bytes: int = BLOCK_BYTES) -> tuple[list[Path], list[Problem], list[Problem]]:
    """What ``fedinsight data validate`` checks: every partner folder with a mapping (read through it, with the
    cross-table checks), every other table file (canonical names); files larger than ``block_bytes`` are read in
    batches where their format and mapping allow it. Returns (files, problems, mapping problems)."""
    if mapping is not None:
        if len(paths) != 1 or not Path(paths[0]).is_dir():
            raise ConfigError("--mapping reads one partner's folder: give that folder (and only it)")
        partner_mapping = load_mapping(mapping)
        return validate_mapped_folder(Path(paths[0]), partner_mapping, encoding=encoding, block_bytes=block_bytes)
    files: list[Path] = []
    problems: list[Problem] = []
    mapping_problems: list[Problem] = []
    plain: list[Path] = []  # files and folders of canonical-named files
    for p in map(Path, paths):
        folders = partner_folders(p) if p.is_dir() else []
        mapped = [d for d in folders if has_mapping(d)]
        problems += unmapped_folders(p) if p.is_dir() else []
        plain += [d for d in folders if d not in mapped] if mapped else [p]
        for d in mapped:
            try:
                found, more, own = validate_mapped_folder(d, find_mapping(d), encoding=encoding,
                                                          block_bytes=block_bytes)
            except MappingError as exc:
                problems += exc.problems
                mapping_problems += exc.problems
                continue
            files += found
            problems += more
            mapping_problems += own
    if plain:
        more_files, more = validate_paths(plain, encoding=encoding, block_bytes=block_bytes)
        files += more_files
        problems += more
    return files, problems, mapping_problems


def load_federation(dataset: str | Path, spec: PartitionSpec | None = None, **kwargs: int) -> dict[str, PartnerData]:
    """Resolve ``--dataset NAME|PATH`` into partners (see the module docstring)."""
    spec = spec or PartitionSpec()
    name = str(dataset)
    if name in BUILTIN_DATASETS:
        return load_builtin_federation(name, spec, **kwargs)
    path = Path(name)
    if path.exists():
        return load_partner_folder(path)
    raise ConfigError(
        f"--dataset '{name}' is neither a built-in ({', '.join(BUILTIN_DATASETS)}) nor an existing folder"
    )


def partner_table(partners: dict[str, PartnerData]) -> pd.DataFrame:
    """One row per partner: customers and rows per table (what `make demo` prints)."""
    rows = []
    for pid, data in partners.items():
        row: dict[str, object] = {"partner": pid, "customers": data.num_customers}
        for table in ("transactions", "interactions", "events"):
            frame = getattr(data, table)
            if any(getattr(p, table) is not None for p in partners.values()):
                row[table] = 0 if frame is None else len(frame)
        if data.transactions is not None:
            row["revenue"] = float(data.transactions["amount"].sum())
        rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame) > 1:
        total = {c: ("total" if c == "partner" else frame[c].sum()) for c in frame.columns}
        frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
    return frame


def write_partner_folder(partners: dict[str, PartnerData], out: Path, fmt: str = "parquet") -> None:
    """Write partners as ``out/<partner>/<table>.<fmt>`` (the caller wraps this in an atomic folder)."""
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--format must be csv or parquet (got {fmt})")
    for pid, data in partners.items():
        folder = out / pid
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in data.tables().items():
            assert isinstance(frame, pd.DataFrame)
            if fmt == "csv":
                frame.to_csv(folder / f"{name}.csv", index=False)
            else:
                frame.to_parquet(folder / f"{name}.parquet", index=False)

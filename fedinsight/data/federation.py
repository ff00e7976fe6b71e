"""A federation: the partners of a run, each with its own canonical tables.

``--dataset NAME|PATH`` everywhere in the CLI resolves here: a built-in name (cdnow, movielens-100k,
synthetic) is loaded and split into simulated partners; a PATH is a folder of per-partner files in the
canonical schema (one sub-folder per partner, as ``fedinsight data synth`` writes them), validated
file by file, with every problem of every partner reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError, DataValidationError, Problem
from fedinsight.data.loaders import cdnow_customers, load_cdnow, load_movielens_100k
from fedinsight.data.partition import (
    PARTITION_SCHEMES,
    dirichlet_partition,
    id_range_key,
    iid_partition,
    natural_partition,
    split_partner_tables,
    zip_region,
)
from fedinsight.data.schema import TABLES, PartnerData
from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.data.validate import _read_and_check, table_for_path

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
            SynthConfig(customers=synthetic_customers, partners=1, seed=spec.seed)
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


def partner_folders(root: Path) -> list[Path]:
    """The partner folders under ``root``, in name order, whatever they are called: every sub-folder holding
    at least one table file (hidden folders and folders without tables, e.g. a generator's ground truth, are
    not partners); ``[root]`` if ``root`` holds table files itself (one partner)."""
    root = Path(root)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    with_tables = [d for d in subdirs if any(table_for_path(f) for f in d.iterdir() if f.is_file())]
    if with_tables:
        return with_tables
    if any(table_for_path(f) for f in root.iterdir() if f.is_file()):
        return [root]
    return []


def load_partner_folder(path: str | Path, *, encoding: str = "utf-8") -> dict[str, PartnerData]:
    """Load and validate a folder of partner data: ``ROOT/<partner>/<table>.{csv,parquet}``.

    A folder holding table files directly is one partner named after the folder. Raises one
    :class:`DataValidationError` listing every problem in every file; returns nothing partial.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataValidationError(Problem(str(root), "is not a folder of partner data"))
    dirs = partner_folders(root)
    if not dirs:
        raise DataValidationError(
            Problem(str(root), f"no partner tables found; expected sub-folders with {', '.join(TABLES)} files")
        )
    problems: list[Problem] = []
    partners: dict[str, PartnerData] = {}
    for d in dirs:
        data = PartnerData(partner_id=d.name, meta={"dataset": str(root), "source": str(d)})
        seen: dict[str, Path] = {}
        for f in sorted(d.iterdir()):
            spec = table_for_path(f) if f.is_file() else None
            if spec is None:
                continue
            if spec.name in seen:
                problems.append(Problem(str(f), f"a second '{spec.name}' table (first: {seen[spec.name].name})"))
                continue
            seen[spec.name] = f
            frame, file_problems = _read_and_check(f, spec, encoding, None)
            problems.extend(file_problems)
            if not file_problems:
                setattr(data, spec.name, frame)
        if data.customers is not None:
            known = set(data.customers["customer_id"])
            for table in ("transactions", "interactions", "events"):
                frame = getattr(data, table)
                if frame is None:
                    continue
                unknown = ~frame["customer_id"].isin(known)
                if unknown.any():
                    is_csv = seen[table].suffix.lower() == ".csv"
                    first, unit = (2, "lines") if is_csv else (1, "rows")
                    shown = ", ".join(str(int(i) + first) for i in np.flatnonzero(unknown.to_numpy())[:10])
                    problems.append(Problem(
                        str(seen[table]),
                        f"customer_id not in this partner's customers table in {int(unknown.sum())} row(s) "
                        f"({unit} {shown})",
                        column="customer_id",
                    ))
        partners[d.name] = data
    if problems:
        raise DataValidationError(problems)
    return partners


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

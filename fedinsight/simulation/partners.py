"""The partners of a simulation: partner folders on this machine, used in place, whatever they are called.

A built-in dataset (CDNOW, MovieLens-100K, synthetic) is split into partners and written once under the
run folder (``OUT/partners``), each with a protection policy declaring the identifier columns fedinsight
itself generated. A folder of a user's own partner folders is used **in place**: each simulated partner
reads its own folder through its own data view (and its ``mapping.toml``, when its files are its own
exports), and nothing of it is copied anywhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedinsight.core.errors import ConfigError, DataValidationError
from fedinsight.core.files import atomic_output_dir
from fedinsight.data.currency import RateTable
from fedinsight.data.federation import (
    BUILTIN_DATASETS,
    PartitionSpec,
    load_federation,
    partner_folders,
    unmapped_folders,
    write_partner_folder,
)
from fedinsight.data.mapping import find_mapping
from fedinsight.data.schema import PartnerData
from fedinsight.data.validate import unreadable_tables
from fedinsight.federation.task import PARTNER_ID_PATTERN
from fedinsight.partner.policy_init import init_federation
from fedinsight.partner.vault import PartnerVault
from fedinsight.partner.view import PartnerView

BUILTIN_FOLDER = "partners"
SPEC_FILE = ".simulation.json"


@dataclass
class Partners:
    """Partner folders under ``root`` (one per partner, in name order) and what is known about the dataset."""

    root: Path
    dataset: str
    builtin: bool
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def folders(self) -> list[Path]:
        return partner_folders(self.root)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.folders]

    def folder(self, name: str) -> Path:
        """The folder of the partner called ``name`` (its folder's name)."""
        for folder in self.folders:
            if folder.name == name:
                return folder
        raise ConfigError(f"no partner '{name}' in {self.root} (its partners: {', '.join(self.names) or 'none'})")

    def views(self, purpose: str, rates: RateTable | None = None) -> dict[str, PartnerData]:
        """Every partner's tables as its data view gives them for ``purpose`` (amounts converted with ``rates``)."""
        return {f.name: PartnerView(f, purpose, rates=rates).tables() for f in self.folders}

    def currencies(self) -> dict[str, str | None]:
        """Each partner's declared currency (its mapping's ``currency``; ``None``: not declared)."""
        return {f.name: (m.currency if (m := find_mapping(f)) is not None else None) for f in self.folders}

    def vaults(self) -> dict[str, PartnerVault]:
        """Every partner's vault: the simulation driver plays every partner, and baselines must split customers
        with the keys the partners hold (e.g. propensity's holdout key)."""
        return {f.name: PartnerView(f, "training").vault for f in self.folders}

    @classmethod
    def builtin(cls, name: str) -> Partners:
        """A built-in dataset (``cdnow``, ``movielens-100k``, ``synthetic``): split into partners when a task runs
        (``partners=``, ``partition=``, ``seed=`` ... are settings of ``Federation.simulate``)."""
        if name not in BUILTIN_DATASETS:
            raise ConfigError(f"unknown built-in dataset '{name}' (known: {', '.join(BUILTIN_DATASETS)})")
        return cls(Path(name), name, True)

    @classmethod
    def from_folder(cls, path: str | Path) -> Partners:
        """A folder of partner folders (any names), used in place."""
        root = Path(path).resolve()
        if not root.is_dir():
            raise ConfigError(f"--dataset {path} is neither a built-in ({', '.join(BUILTIN_DATASETS)}) nor a folder")
        if not partner_folders(root):
            raise ConfigError(f"{root} holds no partner data: expected one sub-folder per partner with its table files "
                              "(transactions, customers, events, interactions, items as .csv or .parquet) or with a "
                              "mapping.toml saying how its own exports are read ('fedinsight partner map --suggest')")
        if problems := unmapped_folders(root):
            raise DataValidationError(problems)
        for folder in partner_folders(root):  # a simulated partner is named after its folder
            if not re.fullmatch(PARTNER_ID_PATTERN, folder.name):
                raise ConfigError(f"partner folder '{folder.name}' cannot name a partner: use letters, digits, spaces "
                                  "and _ - . : ( ) [ ] + & , # (at most 128), e.g. rename it")
        # a table that is a folder, a pipe or a broken link: refused here, before a run folder or a budget is touched
        if problems := [p for folder in partner_folders(root) for p in unreadable_tables(folder)]:
            raise DataValidationError(problems)
        truth = root / "ground_truth.json"  # written by `fedinsight data synth`: public facts about the generator
        facts = json.loads(truth.read_text()) if truth.is_file() else {}
        return cls(root, str(root), False, facts)

    @classmethod
    def builtin_dataset(cls, name: str, spec: PartitionSpec, out_dir: Path, *, customers: int) -> Partners:
        """A built-in dataset split into ``spec.partners`` partners, written once under ``out_dir/partners``.

        The run folder is a simulated world: a later run into it finds the same partners (their keys, their
        erasure registers) and spends from the same ledgers; a run asking for other partners is refused.
        """
        target = out_dir / BUILTIN_FOLDER
        wanted = {"dataset": name, "partners": spec.partners, "partition": spec.scheme, "alpha": spec.alpha,
                  "seed": spec.seed, **({"customers": customers} if name == "synthetic" else {})}
        marker = target / SPEC_FILE
        if target.exists():
            found = json.loads(marker.read_text()) if marker.is_file() else None
            if found != wanted:
                raise ConfigError(f"{out_dir} already holds the partners of another simulation ({found}); use "
                                  "another --out, or --overwrite to start from an empty folder")
            return cls(target.resolve(), name, True)
        parts = load_federation(name, spec, **({"synthetic_customers": customers} if name == "synthetic" else {}))
        with atomic_output_dir(target) as tmp:
            write_partner_folder(parts, tmp)
            init_federation(tmp)  # fedinsight knows (and declares) the identifier columns it planted
            (tmp / SPEC_FILE).write_text(json.dumps(wanted))
        return cls(target.resolve(), name, True)


def resolve(dataset: str, *, partners: int | None, partition: str, alpha: float, seed: int, customers: int,
            out_dir: Path, default_partners: int) -> Partners:
    """``--dataset NAME|PATH`` as a federation (a folder's own partner count must agree with ``partners``)."""
    if dataset in BUILTIN_DATASETS:
        spec = PartitionSpec(partners=partners or default_partners, scheme=partition, alpha=alpha, seed=seed)
        return Partners.builtin_dataset(dataset, spec, out_dir, customers=customers)
    return folder_federation(dataset, partners)


def folder_federation(dataset: str, partners: int | None = None) -> Partners:
    """A folder of partner folders: its own partner count is the simulation's, and ``--partners``, if given,
    must agree with it (a folder's partners are never split or dropped)."""
    federation = Partners.from_folder(dataset)
    found = len(federation.folders)
    if partners is not None and partners != found:
        raise ConfigError(f"--dataset {dataset} holds {found} partners ({', '.join(federation.names)}) but "
                          f"--partners is {partners}; leave --partners out for a folder")
    return federation

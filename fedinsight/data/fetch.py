"""Obtain the built-in datasets from the Python wheels that ship them.

Why wheels: the machines fedinsight runs on reach only package registries, so CDNOW and MovieLens-100K
come from two published wheels (``lifetimes`` and ``recbole``) that carry them as package data. The
wheels are downloaded with ``pip download --no-deps`` (never installed: they pin conflicting
dependencies), their SHA-256 is checked against the pinned value, and only the data members are
extracted into ``$FEDINSIGHT_HOME/datasets/<name>/``. Work already done is skipped.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fedinsight.core.errors import DatasetFetchError, DatasetNotFoundError
from fedinsight.core.files import atomic_output_dir
from fedinsight.core.paths import fedinsight_home


@dataclass(frozen=True)
class WheelDataset:
    """A dataset carried inside a pinned wheel: which wheel, its hash, and which members to extract."""

    name: str
    requirement: str
    sha256: str
    members: dict[str, str]  # member path inside the wheel -> file name in the dataset folder
    description: str


DATASETS: dict[str, WheelDataset] = {
    "cdnow": WheelDataset(
        name="cdnow",
        requirement="lifetimes==0.11.3",
        sha256="261e3dc89977c2b60767ca6728aaa29d429de0c814635070a749c36555895da8",
        members={"lifetimes/datasets/CDNOW_master.txt": "CDNOW_master.txt"},
        description="CDNOW: 69,659 transactions of 23,570 customers, 1997-01..1998-06",
    ),
    "movielens-100k": WheelDataset(
        name="movielens-100k",
        requirement="recbole==1.2.1",
        sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        members={
            "recbole/dataset_example/ml-100k/ml-100k.inter": "ml-100k.inter",
            "recbole/dataset_example/ml-100k/ml-100k.user": "ml-100k.user",
            "recbole/dataset_example/ml-100k/ml-100k.item": "ml-100k.item",
        },
        description="MovieLens-100K: 100,000 ratings by 943 users of 1,682 films",
    ),
}


def dataset_dir(name: str) -> Path:
    """Folder where a fetched built-in dataset lives."""
    return fedinsight_home() / "datasets" / name


def is_fetched(name: str) -> bool:
    spec = DATASETS[name]
    folder = dataset_dir(name)
    return all((folder / target).is_file() for target in spec.members.values())


def require_fetched(name: str) -> Path:
    """The dataset's folder, or a clear error telling the user how to fetch it."""
    if name not in DATASETS:
        raise DatasetNotFoundError(f"unknown dataset '{name}', expected one of {', '.join(DATASETS)}")
    if not is_fetched(name):
        raise DatasetNotFoundError(
            f"dataset '{name}' is not fetched yet (looked in {dataset_dir(name)}); "
            f"run `fedinsight data fetch {name}` (or set FEDINSIGHT_HOME to where it is)"
        )
    return dataset_dir(name)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(spec: WheelDataset, dest: Path) -> Path:
    """``pip download --no-deps`` the pinned wheel into ``dest`` and return its path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", "-d", str(dest), spec.requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DatasetFetchError(
            f"could not download {spec.requirement} from the package index "
            f"(pip exit {proc.returncode}: {' | '.join(tail)}); check network access to the registry"
        )
    return wheels[0]


def extract_members(spec: WheelDataset, wheel: Path, target: Path) -> None:
    """Verify the wheel's hash, then extract only the dataset members, all-or-nothing."""
    actual = sha256_of(wheel)
    if actual != spec.sha256:
        raise DatasetFetchError(
            f"{wheel.name} has sha256 {actual}, expected {spec.sha256}: refusing to use it "
            f"(the registry served a different file)"
        )
    try:
        with zipfile.ZipFile(wheel) as zf, atomic_output_dir(target, overwrite=True) as tmp:
            for member, filename in spec.members.items():
                with zf.open(member) as src, (tmp / filename).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    except KeyError as exc:
        raise DatasetFetchError(f"{wheel.name} does not contain {exc}") from exc
    except zipfile.BadZipFile as exc:
        raise DatasetFetchError(f"{wheel.name} is not a valid wheel: {exc}") from exc


def fetch_dataset(name: str, *, force: bool = False, wheel: Path | None = None) -> tuple[Path, bool]:
    """Fetch one built-in dataset. Returns (folder, whether anything was done).

    ``wheel`` lets a user point at a wheel they already have (it is hash-checked all the same).
    """
    if name not in DATASETS:
        raise DatasetNotFoundError(f"unknown dataset '{name}', expected one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    target = dataset_dir(name)
    if is_fetched(name) and not force:
        return target, False
    if wheel is not None:
        extract_members(spec, Path(wheel), target)
        return target, True
    with tempfile.TemporaryDirectory(prefix="fedinsight-wheel-") as tmp:
        downloaded = _download_wheel(spec, Path(tmp))
        extract_members(spec, downloaded, target)
    return target, True

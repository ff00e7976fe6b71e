"""Writing files safely: all-or-nothing output folders and files, private (0600) key files and databases in
private (0700) state folders.

Why: a command that fails half-way (bad input, Ctrl-C, full disk) must leave no partial output that a
later job could mistake for a complete dataset. Everything is written into a hidden sibling folder and
moved into place with one rename once it is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedinsight.core.errors import ConfigError

PRIVATE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def private_dir(path: str | Path) -> Path:
    """``path`` as a folder only its owner can enter (0700), created if missing. For state folders: budgets,
    keys, the erasure register and logs live there, and ``mkdir`` alone would leave them to the umask (0755)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def private_file(path: str | Path) -> Path:
    """``path`` as an existing file only its owner can read (0600), created empty if missing -- before a library
    (SQLite, a log handler) creates it with the umask's mode. SQLite's journal and WAL files copy this mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    except FileExistsError:
        try:
            if path.stat().st_mode & 0o777 != PRIVATE_MODE:
                os.chmod(path, PRIVATE_MODE)
        except PermissionError:  # another user's file opened read-only (a report reading a ledger): leave it
            pass
    return path


@contextmanager
def atomic_output_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` only if the block finishes without error."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"output folder {out} already exists and is not empty (use --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


@contextmanager
def atomic_output_file(out: str | Path) -> Iterator[Path]:
    """Yield a temporary path that replaces ``out`` only if the block finishes without error."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.partial-", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)


def write_private(path: Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to a new file created with mode 0600 (refuses to replace a file unless asked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, PRIVATE_MODE)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it (old keys stop working)") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, PRIVATE_MODE)  # O_TRUNC of an existing file keeps its old mode
    return path


def write_private_atomic(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` (0600) in one step: a reader sees the old content or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)  # no fsync: this runs for every API request (see privacy.audit on crash ordering)
    os.replace(tmp, path)
    return path


def write_public(path: Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write a certificate or public key (0644), refusing to replace a file unless asked."""
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o644)
    return path

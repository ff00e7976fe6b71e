"""A throw-away PostgreSQL server for tests (the pattern of ``tests/unit/privacy/test_ledger_postgres.py``).

``initdb`` in a temp dir, ``pg_ctl start`` listening only on a unix socket in that dir, stopped by its
postmaster PID at the end. As root, the server runs as the ``postgres`` user (PostgreSQL refuses to run as
root). Without the server binaries the test is skipped with the install instruction (``.ci/run`` installs them).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server, yield its SQLAlchemy URL (``postgresql+psycopg://...``), stop it by PID."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (initdb/pg_ctl); install them with "
                    "`apt-get install -y postgresql` (.ci/run does this)")
    as_root = os.geteuid() == 0
    prefix: list[str] = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="fi-pg-"))
    data, sock, port = base / "data", base / "sock", _free_port()
    for folder in (data, sock):
        folder.mkdir()
        if as_root:
            shutil.chown(folder, "postgres", "postgres")
    if as_root:
        base.chmod(0o755)
    env = {**os.environ, "LC_ALL": "C"}
    pid = None
    try:
        subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True, env=env)
        started = subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"),
                                  "-w", "-t", "300", "-o",
                                  f"-k {sock} -c listen_addresses='' -p {port} -c fsync=off", "start"],
                                 capture_output=True, text=True, env=env, timeout=360)
        if started.returncode != 0:
            log = (data / "server.log").read_text() if (data / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{log}")
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        yield f"postgresql+psycopg://postgres@/postgres?host={sock}&port={port}"
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGINT)  # "fast" shutdown of the postmaster we started, by its PID
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)

"""State that holds budgets, keys, erasures or logs is the owner's only: files 0600 in folders 0700.

The modes are checked after the operations that create them (a partner's init, a ledger write, an erasure,
a supervised child's log), with a permissive umask so the umask cannot be what makes a test pass.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from fedinsight.core.db import make_engine, sqlite_path
from fedinsight.core.files import private_dir, private_file
from fedinsight.core.procs import Supervisor
from fedinsight.partner.policy import STATE_DIR
from fedinsight.partner.policy_init import init_partner
from fedinsight.privacy.consent import ErasureRegister
from fedinsight.privacy.ledger import PrivacyLedger


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def open_umask():
    old = os.umask(0o002)
    yield
    os.umask(old)


def test_partner_init_keeps_its_state_private(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "customers.csv").write_text("customer_id,consent\nc1,true\nc2,false\n", encoding="utf-8")
    init_partner(folder)
    state = folder / STATE_DIR
    assert mode(state) == 0o700 and mode(state / "keys") == 0o700
    keys = sorted((state / "keys").glob("*.key"))
    assert keys and all(mode(k) == 0o600 for k in keys)


def test_ledger_and_erasure_register_files_are_private(tmp_path):
    ledger_file = tmp_path / "state" / "ledger.db"
    ledger = PrivacyLedger(f"sqlite:///{ledger_file}")
    ledger.set_budget("shop", 1.0, 1e-6)
    assert mode(ledger_file) == 0o600
    register_file = tmp_path / "state" / "partner.db"
    ErasureRegister(f"sqlite:///{register_file}").record({"k1": ["t1", "t2"]})
    assert mode(register_file) == 0o600
    leftovers = [p for p in (tmp_path / "state").iterdir() if p.suffix != ".db" and mode(p) & 0o077]
    assert not leftovers  # a journal or WAL file copies the database's mode


def test_an_existing_world_readable_database_is_tightened(tmp_path):
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    make_engine(f"sqlite:///{path}").dispose()
    assert mode(path) == 0o600


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:////srv/state/ledger.db", Path("/srv/state/ledger.db")), ("sqlite:///ledger.db", Path("ledger.db")),
    ("sqlite://", None), ("sqlite:///:memory:", None),
])
def test_sqlite_path(url, expected):
    assert sqlite_path(url) == expected


def test_state_and_log_folders(tmp_path):
    assert mode(private_dir(tmp_path / "a" / "b")) == 0o700
    assert mode(private_file(tmp_path / "a" / "b" / "x.log")) == 0o600
    supervisor = Supervisor(tmp_path / "logs")
    child = supervisor.start("noop", [sys.executable, "-c", "print('hello')"], dict(os.environ))
    child.proc.wait(timeout=60)
    assert mode(tmp_path / "logs") == 0o700 and mode(child.log) == 0o600


def test_coordinator_state_folder_and_database(tmp_path):
    from types import SimpleNamespace

    from fedinsight.coordinator.state import CoordinatorState

    folder = tmp_path / "coordinator-state"
    config = SimpleNamespace(state_dir=folder, database_url=f"sqlite:///{folder / 'fedinsight.db'}",
                             coordinator=SimpleNamespace(accountant="rdp"))
    state = CoordinatorState.from_config(config)  # type: ignore[arg-type]
    state.ledger.set_budget("retail", 1.0, 1e-6, reason="test")
    state.audit.append(actor="operator", action="test")
    assert mode(folder) == 0o700 and mode(folder / "fedinsight.db") == 0o600
    assert not [p for p in folder.rglob("*") if p.is_file() and mode(p) & 0o077]  # keys, anchor: 0600 too

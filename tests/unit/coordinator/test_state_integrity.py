"""A coordinator whose database was deleted, emptied, replaced or corrupted must not start with full budgets.

The audit log's head is anchored outside the database (a MAC'd file in the state folder), so losing the
database is visible; starting fresh takes an explicit ``--init-state``.
"""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from fedinsight.cli import main
from fedinsight.coordinator.state import CoordinatorState
from fedinsight.core.errors import StateIntegrityError
from fedinsight.federation.certs import init_certs
from fedinsight.privacy.ledger import dpsgd_event


@pytest.fixture()
def state(tmp_path) -> CoordinatorState:
    st = CoordinatorState(f"sqlite:///{tmp_path / 'state' / 'fedinsight.db'}", tmp_path / "state")
    st.state_dir.mkdir(parents=True)
    st.ledger.set_budget("retail", 5.0, 1e-6, reason="test")
    st.ledger.charge(["retail"], dpsgd_event(1.0, 0.05, 10), job_id="job-a", kind="training")
    for i in range(3):
        st.audit.append(actor="operator", action=f"step {i}")
    return st


def _fresh(st: CoordinatorState) -> CoordinatorState:
    return CoordinatorState(st.db_url, st.state_dir)


def test_an_intact_state_passes_and_the_anchor_follows_every_append(state):
    _fresh(state).check_integrity()
    anchor = json.loads((state.state_dir / "audit.anchor").read_text())
    assert anchor["seq"] == 3 and len(anchor["hash"]) == 64
    state.audit.append(actor="operator", action="one more")
    assert json.loads((state.state_dir / "audit.anchor").read_text())["seq"] == 4


@pytest.mark.parametrize("damage", ["deleted", "zero bytes", "emptied tables", "corrupt"])
def test_a_lost_database_is_refused_with_what_to_do(state, damage):
    db = state.state_dir / "fedinsight.db"
    for extra in ("-wal", "-shm"):
        db.with_name(db.name + extra).unlink(missing_ok=True)
    if damage == "deleted":
        db.unlink()
    elif damage == "zero bytes":
        db.write_bytes(b"")
    elif damage == "emptied tables":
        with Session(state.audit.engine) as s, s.begin():
            s.execute(text("DELETE FROM audit_log"))
            s.execute(text("DELETE FROM audit_head"))
    else:
        db.write_bytes(os.urandom(8192))
    with pytest.raises(StateIntegrityError, match="--init-state") as refused:
        _fresh(state).check_integrity()
    assert "budget" in str(refused.value)


def test_truncating_the_log_fails_verification_against_the_anchor(state):
    with Session(state.audit.engine) as s, s.begin():
        s.execute(text("DELETE FROM audit_log"))
        s.execute(text("DELETE FROM audit_head"))
    result = _fresh(state).audit.verify()
    assert not result.ok and any("anchor" in p for p in result.problems)


def test_a_missing_audit_key_is_an_error_never_replaced(state):
    key = state.state_dir / "keys" / "audit.key"
    before = key.read_bytes()
    key.unlink()
    with pytest.raises(StateIntegrityError, match="audit key"):
        _ = _fresh(state).audit
    assert not key.exists()
    key.write_bytes(before)
    assert _fresh(state).audit.verify().ok


def test_init_state_starts_fresh_and_records_what_it_replaced(state):
    (state.state_dir / "fedinsight.db").unlink()
    fresh = _fresh(state)
    replaced = fresh.init_state()
    assert replaced["anchor_seq"] == 3
    fresh.check_integrity()
    assert [e.action for e in fresh.audit.entries()] == ["state.init"]
    assert fresh.audit.entries()[0].detail["replaced"]["anchor_seq"] == 3
    assert fresh.audit.verify().ok


def test_a_first_start_needs_no_flag(tmp_path):
    st = CoordinatorState(f"sqlite:///{tmp_path / 'new' / 'fedinsight.db'}", tmp_path / "new")
    st.state_dir.mkdir()
    st.check_integrity()  # nothing there yet: nothing lost


def test_cli_reports_a_corrupt_database_in_one_line(state, tmp_path, capsys):
    certs = tmp_path / "certs"
    init_certs(certs, hosts=["127.0.0.1"], partners=["retail"])
    config = tmp_path / "coordinator.toml"  # state-dir "state": the fixture's database
    config.write_text(f'[coordinator]\nfederation = "marketing"\nstate-dir = "state"\n[superlink]\nport = 9092\n'
                      f'[tls]\nca-cert = "{certs}/ca.crt"\ncert = "{certs}/coordinator.crt"\n'
                      f'key = "{certs}/coordinator.key"\n[api]\nport = 8443\n[[partners]]\nid = "retail"\n'
                      f'public-key = "{certs}/partners/retail.pub"\nepsilon = 5.0\n')
    (state.state_dir / "fedinsight.db").write_bytes(os.urandom(8192))
    for extra in ("-wal", "-shm"):
        (state.state_dir / f"fedinsight.db{extra}").unlink(missing_ok=True)
    for command in (["audit", "verify"], ["job", "list"], ["tokens", "list"]):
        code = main([*command, "--config", str(config)])
        err = capsys.readouterr().err
        assert code == StateIntegrityError.exit_code and "Traceback" not in err and "restore" in err, (command, err)
        assert len(err.strip().splitlines()) <= 4, err


def test_a_refused_start_leaves_the_evidence_and_no_new_database(state, tmp_path):
    """The refusal must not write a 'coordinator.stop' entry: that would create a fresh database, start a new
    chain and move the anchor, and the next start would pass with full budgets."""
    import socket

    from fedinsight.coordinator.process import run_coordinator

    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    certs = tmp_path / "certs"
    init_certs(certs, hosts=["127.0.0.1"], partners=["retail"])
    config = tmp_path / "coordinator.toml"
    config.write_text(f'[coordinator]\nfederation = "marketing"\nstate-dir = "state"\n[superlink]\nport = {ports[0]}\n'
                      f'[tls]\nca-cert = "{certs}/ca.crt"\ncert = "{certs}/coordinator.crt"\n'
                      f'key = "{certs}/coordinator.key"\n[api]\nport = {ports[1]}\n[[partners]]\nid = "retail"\n'
                      f'public-key = "{certs}/partners/retail.pub"\nepsilon = 5.0\n')
    db = state.state_dir / "fedinsight.db"
    for extra in ("-wal", "-shm"):
        db.with_name(db.name + extra).unlink(missing_ok=True)
    db.unlink()
    anchor = (state.state_dir / "audit.anchor").read_bytes()
    for _ in range(2):  # refused twice: the first refusal changed nothing
        with pytest.raises(StateIntegrityError, match="--init-state"):
            run_coordinator(config, say=lambda _m: None)
        assert not db.exists() and (state.state_dir / "audit.anchor").read_bytes() == anchor
    assert not list(state.state_dir.glob("*.pid"))  # the PID file was released

"""Audit chain (edits, deletions, truncation detected), API tokens (hashed, revocable), abuse limits."""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.orm import Session

from fedinsight.coordinator.abuse import ProbeDetector, TokenBucket
from fedinsight.coordinator.auth import Permission, Role, TokenStore
from fedinsight.core.errors import ConfigError, NotFoundError
from fedinsight.privacy.audit import AuditHeadRow, AuditLog, AuditRow, load_or_create_key


@pytest.fixture()
def log(tmp_path) -> AuditLog:
    audit = AuditLog(f"sqlite:///{tmp_path / 'a.db'}", load_or_create_key(tmp_path / "keys" / "audit.key"))
    for i in range(6):
        audit.append(actor=f"user{i % 2}", role="analyst", action="GET /insights", target=f"ins-{i}",
                     epsilon=0.1 * i, detail={"status": 200})
    return audit


def test_audit_key_file_is_private_and_reused(tmp_path):
    path = tmp_path / "keys" / "audit.key"
    key = load_or_create_key(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_or_create_key(path) == key and len(key) == 32


def test_intact_chain_verifies(log):
    result = log.verify()
    assert result.ok and result.entries == 6
    assert [e.seq for e in log.entries()] == [1, 2, 3, 4, 5, 6]
    assert log.entries(since_seq=4)[0].prev_hash == log.entries()[3].hash


@pytest.mark.parametrize("column,value", [("actor", "someone-else"), ("outcome", "denied"), ("epsilon", 0.0),
                                          ("detail", '{"status": 403}')])
def test_an_edited_entry_is_detected(log, column, value):
    with Session(log.engine) as s, s.begin():
        s.execute(update(AuditRow).where(AuditRow.seq == 3).values({column: value}))
    result = log.verify()
    assert not result.ok
    assert any("entry 3" in p and "edited" in p for p in result.problems)


def test_a_deleted_entry_is_detected(log):
    with Session(log.engine) as s, s.begin():
        s.execute(delete(AuditRow).where(AuditRow.seq == 2))
    problems = log.verify().problems
    assert any("2..2 are missing" in p for p in problems) and any("entry 3" in p for p in problems)


def test_deleting_the_newest_entries_is_detected(log):
    with Session(log.engine) as s, s.begin():
        s.execute(delete(AuditRow).where(AuditRow.seq >= 5))
    assert any("newest entries deleted" in p for p in log.verify().problems)


def test_rewriting_the_head_without_the_key_is_detected(log):
    last = log.entries()[3]
    with Session(log.engine) as s, s.begin():
        s.execute(delete(AuditRow).where(AuditRow.seq >= 5))
        s.execute(update(AuditHeadRow).values(seq=4, hash=last.hash))
    assert any("head record was altered" in p for p in log.verify().problems)


def test_a_recomputed_chain_without_the_key_does_not_verify(log, tmp_path):
    forged = AuditLog(str(log.engine.url), os.urandom(32))  # someone with database access but not the key
    with Session(log.engine) as s, s.begin():
        s.execute(text("DELETE FROM audit_log"))
        s.execute(text("DELETE FROM audit_head"))
    forged.append(actor="attacker", action="GET /insights")
    assert forged.verify().ok
    assert not log.verify().ok


def test_tokens_are_stored_hashed_and_checked(tmp_path):
    store = TokenStore(f"sqlite:///{tmp_path / 't.db'}", os.urandom(32))
    token, info = store.create("ana", "analyst")
    assert token.startswith("fit_") and info.role == "analyst"
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT digest FROM api_tokens")).scalar_one()
    assert token.split("_", 2)[2] not in stored and len(stored) == 64
    who = store.authenticate(token)
    assert who is not None and who.role is Role.ANALYST and who.name == "ana"
    assert store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.authenticate("fit_0000000000000000_x") is None
    assert store.authenticate("garbage") is None and store.authenticate(None) is None
    store.revoke(info.id)
    assert store.authenticate(token) is None
    with pytest.raises(NotFoundError):
        store.revoke("nope")
    with pytest.raises(ConfigError, match="unknown role"):
        store.create("x", "root")


def test_least_privilege():
    from fedinsight.coordinator.auth import PERMISSIONS

    assert Permission.READ_AUDIT in PERMISSIONS[Role.AUDITOR]
    assert Permission.READ_AUDIT not in PERMISSIONS[Role.ANALYST] | PERMISSIONS[Role.ADMIN]
    assert Permission.READ_ALL_BUDGETS not in PERMISSIONS[Role.ANALYST]
    assert Permission.READ_INSIGHTS not in PERMISSIONS[Role.AUDITOR]
    assert Permission.SUBMIT_QUERY not in PERMISSIONS[Role.AUDITOR]


def test_token_bucket_refuses_beyond_burst_then_refills():
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take("t", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("t", now=0.0) == pytest.approx(0.5)
    assert bucket.take("other", now=0.0) == 0.0  # per token
    assert bucket.take("t", now=0.6) == 0.0
    assert bucket.take("t", cost=10, now=0.6) > 0


def test_probe_detector_refuses_one_filter_sweeps(tmp_path):
    probes = ProbeDetector(f"sqlite:///{tmp_path / 'p.db'}", max_variants=3)
    base = {"region": "north", "channel": "email"}
    for zip_code in ("10001", "10002", "10003"):
        assert not probes.check("tok", "segment-sizes", {**base, "zip": zip_code}).refused
    verdict = probes.check("tok", "segment-sizes", {**base, "zip": "10004"})
    assert verdict.refused and verdict.varied_filter == "zip" and "probing" in verdict.reason
    # other tokens, other queries and broader questions are unaffected
    assert not probes.check("tok2", "segment-sizes", {**base, "zip": "10004"}).refused
    assert not probes.check("tok", "funnel-conversion", {**base, "zip": "10004"}).refused
    assert not probes.check("tok", "segment-sizes", {"region": "south"}).refused
    # the history is in the database: a new detector (restart) remembers it
    again = ProbeDetector(f"sqlite:///{tmp_path / 'p.db'}", max_variants=3)
    assert again.check("tok", "segment-sizes", {**base, "zip": "10005"}).refused


def test_an_entry_is_bounded_whatever_the_request_carried(tmp_path):
    """Column sizes hold on every database (PostgreSQL enforces VARCHAR(128)), and a huge request body never
    lands in the log: what is kept is its size and digest."""
    audit = AuditLog(f"sqlite:///{tmp_path / 'a.db'}", load_or_create_key(tmp_path / "keys" / "audit.key"))
    entry = audit.append(actor="a" * 500, role="r" * 100, action="GET /" + "x" * 1000, target="t" * 2000,
                         outcome="o" * 200, detail={"filters": {"campaign": "y" * 200_000}})
    assert len(entry.actor) <= 128 and len(entry.role) <= 32 and len(entry.action) <= 128
    assert len(entry.target) <= 512 and len(entry.outcome) <= 64
    assert entry.detail["truncated"] is True and entry.detail["bytes"] > 200_000 and len(entry.detail["sha256"]) == 64
    assert "y" * 100 not in json.dumps(entry.detail)
    assert audit.verify().ok

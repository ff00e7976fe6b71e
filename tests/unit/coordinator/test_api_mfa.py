"""Admins and auditors need a second factor: `tokens mfa enrol` gives a TOTP secret, an otpauth URI and recovery
codes; POST /session trades the API token and a code for a session token; codes cannot be replayed, recovery
codes work once, guessing is cut off, and analysts need it only when the configuration says so."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from fastapi.testclient import TestClient

from fedinsight.cli import main
from fedinsight.coordinator.api import create_app
from fedinsight.coordinator.mfa import STEP_SECONDS
from fedinsight.coordinator.state import CoordinatorState
from fedinsight.federation.certs import init_certs


def _h(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


@pytest.fixture()
def config(tmp_path):
    certs = tmp_path / "certs"
    init_certs(certs, hosts=["127.0.0.1"], partners=["retail"])
    path = tmp_path / "coordinator.toml"
    path.write_text(f'[coordinator]\nfederation = "marketing"\nstate-dir = "state"\n[superlink]\nport = 9092\n'
                    f'[tls]\nca-cert = "{certs}/ca.crt"\ncert = "{certs}/coordinator.crt"\n'
                    f'key = "{certs}/coordinator.key"\n[api]\nport = 8443\n[[partners]]\nid = "retail"\n'
                    f'public-key = "{certs}/partners/retail.pub"\nepsilon = 5.0\n')
    return path


def _cli_json(capsys, *args: str) -> dict:
    assert main(list(args)) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


def test_enrol_open_a_session_and_no_replay(config, capsys):
    created = _cli_json(capsys, "tokens", "create", "auditor-1", "--role", "auditor", "--config", str(config), "--json")
    enrolled = _cli_json(capsys, "tokens", "mfa", "enrol", created["id"], "--config", str(config), "--json")
    assert enrolled["otpauth_uri"].startswith("otpauth://totp/") and "issuer=fedinsight" in enrolled["otpauth_uri"]
    assert len(enrolled["recovery_codes"]) == 10 and len(set(enrolled["recovery_codes"])) == 10
    state = CoordinatorState.resolve(config)
    client = TestClient(create_app(state))
    token = created["token"]

    refused = client.get("/audit", headers=_h(token))  # the API token alone opens nothing but /session
    assert refused.status_code == 401 and "second factor" in refused.json()["detail"]
    assert client.post("/session", headers=_h(token)).status_code == 422  # no code at all

    totp = TOTP(base64.b32decode(enrolled["secret"]), 6, hashes.SHA1(), STEP_SECONDS)
    step = int(time.time() // STEP_SECONDS)
    code = totp.generate(step * STEP_SECONDS).decode()
    opened = client.post("/session", headers=_h(token, **{"X-TOTP": code}))
    assert opened.status_code == 201, opened.text
    session = opened.json()["token"]
    assert session.startswith("fis_") and client.get("/audit", headers=_h(session)).status_code == 200
    assert client.post("/session", headers=_h(session, **{"X-TOTP": code})).status_code == 403  # not with a session

    replay = client.post("/session", headers=_h(token, **{"X-TOTP": code}))
    assert replay.status_code == 401 and "already used" in replay.json()["detail"]
    # the next step's code is new (accepted: within one step of the server's clock, whichever step it is in now)
    assert client.post("/session", headers=_h(token, **{"X-TOTP": totp.generate((step + 1) * STEP_SECONDS)
                                                        .decode()})).status_code == 201

    recovery = enrolled["recovery_codes"][0]
    assert client.post("/session", headers=_h(token, **{"X-Recovery-Code": recovery})).status_code == 201
    assert client.post("/session", headers=_h(token, **{"X-Recovery-Code": recovery})).status_code == 401
    assert state.mfa.recovery_codes_left(created["id"]) == 9

    # revoking the token ends its sessions at once (sessions are checked on every request, not cached)
    assert main(["tokens", "revoke", created["id"], "--config", str(config)]) == 0
    assert client.get("/audit", headers=_h(session)).status_code == 401
    outcomes = [e.outcome for e in state.audit.entries(limit=100)]
    assert "second-factor-required" in outcomes and "second-factor-refused" in outcomes
    assert any(e.action == "token.mfa.enrol" for e in state.audit.entries(limit=100))


def test_guessing_is_cut_off_and_analysts_need_it_only_when_configured(tmp_path):
    state = CoordinatorState(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path)
    admin, info = state.tokens.create("admin-1", "admin")
    analyst = state.tokens.create("analyst-1", "analyst")[0]
    client = TestClient(create_app(state))
    not_enrolled = client.post("/session", headers=_h(admin, **{"X-TOTP": "123456"}))
    assert not_enrolled.status_code == 403 and "tokens mfa enrol" in not_enrolled.json()["detail"]
    state.mfa.enrol(info.id, account="admin-1")
    # five wrong codes, then no more tries (one in a million per guess: 20 guesses an hour is about 6e-5)
    codes = [client.post("/session", headers=_h(admin, **{"X-TOTP": f"{i:06d}"})).status_code for i in range(6)]
    assert codes[:5].count(401) >= 4 and codes[5] == 429  # (a guess may be right by luck: 3 in a million)
    assert client.get("/budget", headers=_h(analyst)).status_code == 200

    strict = TestClient(create_app(state, mfa_for_analysts=True))
    needs = strict.get("/budget", headers=_h(analyst))
    assert needs.status_code == 401 and "analyst tokens need a second factor" in needs.json()["detail"]


def test_secrets_are_not_stored_in_the_clear(tmp_path):
    state = CoordinatorState(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path)
    info = state.tokens.create("auditor-1", "auditor")[1]
    enrolment = state.mfa.enrol(info.id, account="auditor-1")
    session = state.mfa.open_session(info.id, 5)[0]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("fedinsight.db*"))  # the database and its WAL
    assert info.id.encode() in raw  # (what is stored can be found this way)
    secret = base64.b32decode(enrolment.secret)
    assert secret not in raw and secret.hex().encode() not in raw and enrolment.secret.encode() not in raw
    assert all(code.encode() not in raw for code in enrolment.recovery_codes)
    assert session.split("_")[2].encode() not in raw

"""Anomaly detection on access: a scripted bulk reader and a scripted differencing analyst raise alerts in the audit
log and in `fedinsight audit alerts`, and past the lock level their token is locked until an admin unlocks it;
a token's own baseline raises its ceiling; ordinary use raises nothing."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from fedinsight.cli import main
from fedinsight.coordinator.anomaly import AccessMonitor, AnomalyLimits
from fedinsight.coordinator.api import create_app
from fedinsight.coordinator.state import CoordinatorState
from fedinsight.federation.certs import init_certs

LIMITS = AnomalyLimits(requests=1000, records=1000, distinct_insights=5, bytes=10**9, overlapping_queries=3,
                       baseline_factor=5.0, lock_factor=2.0)


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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


def _app(state: CoordinatorState) -> TestClient:
    def submit(task, options, who):  # noqa: ANN001, ANN202
        return state.jobs.create(task=task, federation="fedinsight", run_config=options,
                                 requester=f"token:{who.token_id}")

    # counts are written after every request (anomaly_flush_seconds=0) so the script's effect is immediate
    return TestClient(create_app(state, submit=submit, anomaly=LIMITS, anomaly_flush_seconds=0,
                                 probe_max_variants=100))


def _insights(state: CoordinatorState, n: int) -> list[str]:
    state.insights.save("job-1", [{"name": f"insight-{i}", "kind": "segment_profile", "query": {}, "epsilon": 0.1,
                                   "delta": 1e-6, "partners": 2, "suppressed_groups": 0, "values": [float(i)],
                                   "ci95": 1.0} for i in range(n)], requester="analyst")
    return [str(i.id) for i in state.insights.list()]


def test_a_bulk_reader_is_alerted_then_locked_until_an_admin_unlocks(config, capsys):
    state = CoordinatorState.resolve(config)
    ids = _insights(state, 12)
    client = _app(state)
    reader, info = state.tokens.create("scraper", "analyst")
    bystander = state.tokens.create("colleague", "analyst")[0]
    codes = [client.get(f"/insights/{i}", headers=_h(reader)).status_code for i in ids[:10]]
    # 6 distinct insights > 5: alert; 10 >= 2 x 5: locked, so the 11th read is refused
    assert codes == [200] * 10
    refused = client.get(f"/insights/{ids[10]}", headers=_h(reader))
    assert refused.status_code == 403 and "tokens unlock" in refused.json()["detail"]
    assert client.get(f"/insights/{ids[0]}", headers=_h(bystander)).status_code == 200  # other tokens unaffected

    alerts = [e for e in state.audit.entries(limit=1000) if e.action == "anomaly.alert"]
    assert [(e.target, e.outcome, e.detail["figure"]) for e in alerts] == [
        (info.id, "alert", "distinct_insights"), (info.id, "token-locked", "distinct_insights")]
    assert state.audit.verify().ok
    assert main(["audit", "alerts", "--config", str(config), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["token_id"] == info.id and listed[0]["locked"] and "different insights read" in listed[0]["words"]

    assert main(["tokens", "unlock", info.id, "--config", str(config)]) == 0
    capsys.readouterr()
    client.app.state.api.monitor.unlock(info.id)  # (the API remembers a lock for a second; the test does not wait)
    assert client.get(f"/insights/{ids[0]}", headers=_h(reader)).status_code == 200
    assert main(["tokens", "unlock", info.id, "--config", str(config)]) != 0  # not locked any more: says so


def test_a_differencing_analyst_is_alerted_then_locked(tmp_path):
    state = CoordinatorState(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path)
    client = _app(state)
    analyst, info = state.tokens.create("differ", "analyst")
    # the same question again and again (averaging noise away), then one filter nudged: near-identical queries
    bodies = [{"query": "ltv-tiers", "filters": {"as_of": "2025-01-01"}}] * 4 + [
        {"query": "ltv-tiers", "filters": {"as_of": f"2025-01-0{d}"}} for d in (2, 3)]
    codes = [client.post("/queries", json=b, headers=_h(analyst)).status_code for b in bodies]
    assert codes == [202, 202, 202, 202, 202, 403]  # 4 overlapping > 3: alert; 6 >= 2 x 3: locked
    outcomes = [(e.outcome, e.detail.get("figure")) for e in state.audit.entries(limit=1000)
                if e.action == "anomaly.alert"]
    assert outcomes == [("alert", "overlapping_queries"), ("token-locked", "overlapping_queries")]
    assert client.get("/budget", headers=_h(analyst)).status_code == 403  # locked everywhere
    other = state.tokens.create("honest", "analyst")[0]
    for body in ({"query": "ltv-tiers"}, {"query": "segment-profile-rfm"}, {"query": "ltv-tiers", "epsilon": 1.0}):
        assert client.post("/queries", json=body, headers=_h(other)).status_code == 202
    assert [(a.token_id, a.locked) for a in state.access.alerts()] == [(info.id, True)]  # one row, now locked


def test_a_tokens_own_baseline_raises_its_ceiling(tmp_path):
    monitor = AccessMonitor(f"sqlite:///{tmp_path / 'm.db'}", AnomalyLimits(requests=100, lock_factor=100.0))
    hour = 500_000
    for h in range(hour - 24, hour):  # a heavy reader: 2,800 requests an hour for a day (400 an hour over a week)
        for _ in range(2800):
            monitor.observe("steady", now=h * 3600.0)
    monitor.flush()  # (those hours were above the floor before there was a baseline: alerts, no lock)
    for _ in range(400):  # now 400 in an hour: within its habit (ceiling 5 x 400), no alert...
        monitor.observe("steady", now=hour * 3600.0)
        monitor.observe("new", now=hour * 3600.0)
    alerts = monitor.flush()
    assert [(a.token_id, a.figure) for a in alerts] == [("new", "requests")]  # ...while a new token at 400 is flagged
    assert alerts[0].threshold == 100 and not alerts[0].locked
    assert not any(a.locked for a in monitor.alerts())


def test_an_admin_lists_alerts_and_unlocks_over_the_api_with_a_session_only(tmp_path):
    from support.sessions import session_for

    state = CoordinatorState(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path)
    ids = _insights(state, 12)
    client = _app(state)
    reader, info = state.tokens.create("scraper", "analyst")
    for i in ids[:10]:  # locked at the 10th distinct insight (see the bulk reader above)
        client.get(f"/insights/{i}", headers=_h(reader))
    assert client.get(f"/insights/{ids[10]}", headers=_h(reader)).status_code == 403
    admin_token = state.tokens.create("ops", "admin")[0]
    admin = session_for(state, admin_token)
    auditor = session_for(state, state.tokens.create("aud", "auditor")[0])

    # only an admin, and only through a second-factor session
    assert client.get("/alerts", headers=_h(admin_token)).status_code == 401  # the API token alone: no
    assert client.get("/alerts", headers=_h(auditor)).status_code == 403
    assert client.post(f"/tokens/{info.id}/unlock", headers=_h(reader)).status_code == 403
    alerts = client.get("/alerts", headers=_h(admin))
    assert alerts.status_code == 200
    assert [(a["token_id"], a["locked"]) for a in alerts.json()] == [(info.id, True)]
    assert "different insights read" in alerts.json()[0]["words"]

    assert client.post("/tokens/not-an-id/unlock", headers=_h(admin)).status_code == 422
    unlocked = client.post(f"/tokens/{info.id}/unlock", headers=_h(admin))
    assert unlocked.status_code == 200 and unlocked.json() == {"token_id": info.id, "unlocked": True}
    assert client.get(f"/insights/{ids[0]}", headers=_h(reader)).status_code == 200  # this worker: at once
    assert client.post(f"/tokens/{info.id}/unlock", headers=_h(admin)).status_code == 404  # not locked any more
    entries = [(e.action, e.target) for e in state.audit.entries(limit=1000) if e.action == "token.unlock"]
    assert entries == [("token.unlock", info.id)]

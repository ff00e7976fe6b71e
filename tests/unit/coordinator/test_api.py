"""The insights API in-process: authentication, least privilege, abuse limits, audit of every access."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from support.sessions import session_for

from fedinsight.coordinator.api import create_app
from fedinsight.coordinator.state import CoordinatorState


@pytest.fixture()
def state(tmp_path) -> CoordinatorState:
    st = CoordinatorState(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path)
    for pid, eps in (("retail", 4.0), ("bank", 2.0)):
        st.ledger.set_budget(pid, eps, 1e-6)
    st.insights.save("job-1", [{"name": "segment-profile-rfm", "kind": "segment_profile", "query": {},
                                "epsilon": 0.5, "delta": 1e-6, "partners": 2, "suppressed_groups": 0,
                                "values": [120.5, 80.2], "ci95": 4.1}], requester="analyst")
    return st


def _client(state: CoordinatorState, **kwargs) -> tuple[TestClient, dict[str, str], list]:
    submitted: list = []

    def submit(task, options, who):  # noqa: ANN001, ANN202
        job = state.jobs.create(task=task, federation="fedinsight", run_config=options,
                                requester=f"token:{who.token_id}")
        submitted.append((task, options))
        return job

    app = create_app(state, submit=submit, **kwargs)
    tokens = {role: state.tokens.create(f"{role}-1", role)[0] for role in ("admin", "analyst", "auditor")}
    for role in ("admin", "auditor"):  # human roles work through a session opened with a second factor
        tokens[role] = session_for(state, tokens[role])
    tokens["bound"] = state.tokens.create("retail-analyst", "analyst", partner_id="retail")[0]
    return TestClient(app), tokens, submitted


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_schema_health_and_authentication(state):
    client, tokens, _ = _client(state)
    schema = client.get("/openapi.json").json()
    assert {"/insights", "/insights/{insight_id}", "/queries", "/budget", "/audit", "/health"} <= set(schema["paths"])
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/insights").status_code == 401
    bad = client.get("/insights", headers=_h("fit_0123456789abcdef_wrong"))
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    page = client.get("/insights", headers=_h(tokens["analyst"])).json()
    assert page["total"] == 1 and "payload" not in page["items"][0]
    one = client.get(f"/insights/{page['items'][0]['id']}", headers=_h(tokens["analyst"])).json()
    assert one["payload"]["values"] == [120.5, 80.2] and one["job_id"] == "job-1"
    assert client.get("/insights/nope", headers=_h(tokens["analyst"])).status_code == 404


def test_roles_are_least_privilege(state):
    client, tokens, _ = _client(state)
    assert client.get("/audit", headers=_h(tokens["analyst"])).status_code == 403
    assert client.get("/audit", headers=_h(tokens["admin"])).status_code == 403
    assert client.get("/audit", headers=_h(tokens["auditor"])).status_code == 200
    assert client.get("/insights", headers=_h(tokens["auditor"])).status_code == 403
    assert client.post("/queries", json={"query": "ltv-tiers"}, headers=_h(tokens["auditor"])).status_code == 403

    analyst = client.get("/budget", headers=_h(tokens["analyst"])).json()
    assert analyst == {"scope": "federation", "epsilon_remaining": 2.0, "partners": None}
    bound = client.get("/budget", headers=_h(tokens["bound"])).json()
    assert bound["scope"] == "partner" and [p["partner_id"] for p in bound["partners"]] == ["retail"]
    full = client.get("/budget", headers=_h(tokens["auditor"])).json()
    assert sorted(p["partner_id"] for p in full["partners"]) == ["bank", "retail"]


def test_every_access_is_audited_and_the_chain_verifies(state):
    client, tokens, _ = _client(state)
    client.get("/health")
    client.get("/insights", headers=_h(tokens["analyst"]))
    client.get("/audit", headers=_h(tokens["analyst"]))
    client.get("/insights", headers=_h("fit_0123456789abcdef_wrong"))
    entries = state.audit.entries()
    assert [(e.actor, e.action, e.outcome, e.detail["status"]) for e in entries] == [
        ("analyst-1", "GET /insights", "ok", 200),
        ("analyst-1", "GET /audit", "denied", 403),
        ("anonymous", "GET /insights", "denied", 401),
    ]
    verify = client.get("/audit/verify", headers=_h(tokens["auditor"])).json()
    assert verify["ok"] and verify["entries"] == 3  # the verify request itself is appended after it ran


def test_rate_limit_and_bulk_pull_limit(state):
    client, tokens, _ = _client(state, requests_per_second=0.001, burst=3, insight_reads_per_minute=600)
    codes = [client.get("/health").status_code for _ in range(5)]
    assert codes == [200] * 5  # unauthenticated health is not rate limited per token
    codes = [client.get("/insights", headers=_h(tokens["analyst"])).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert client.get("/insights", headers=_h(tokens["admin"])).status_code == 200  # per token

    client, tokens, _ = _client(state, insight_reads_per_minute=2)
    insight = str(state.insights.list()[0].id)
    codes = [client.get(f"/insights/{insight}", headers=_h(tokens["analyst"])).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert state.audit.entries(limit=1000)[-1].outcome == "bulk-pull-refused"


def test_query_submission_validation_and_probing_refusal(state):
    client, tokens, submitted = _client(state, probe_max_variants=3)
    h = _h(tokens["analyst"])
    names = [e["name"] for e in client.get("/catalogue", headers=h).json()]
    assert "segment-profile-rfm" in names and "ltv-tiers" in names
    assert client.post("/queries", json={"query": "nope"}, headers=h).status_code == 404
    assert client.post("/queries", json={"query": "ltv-tiers", "filters": {"ssn": "1"}}, headers=h).status_code == 422
    assert client.post("/queries", json={"query": "ltv-tiers", "epsilon": 50}, headers=h).status_code == 422
    for day in ("2025-01-01", "2025-01-02", "2025-01-03"):
        r = client.post("/queries", json={"query": "ltv-tiers", "filters": {"as_of": day}}, headers=h)
        assert r.status_code == 202 and r.json()["status"] == "submitted"
    probe = client.post("/queries", json={"query": "ltv-tiers", "filters": {"as_of": "2025-01-04"}}, headers=h)
    assert probe.status_code == 403 and "probing" in probe.json()["detail"]
    assert len(submitted) == 3
    assert submitted[0] == ("insights", {"only": "ltv-tiers", "epsilon": 0.5, "as-of": "2025-01-01"})
    refused = [e for e in state.audit.entries(limit=1000) if e.outcome == "refused-probing"]
    assert len(refused) == 1 and refused[0].detail["filters"] == {"as_of": "2025-01-04"}

    job_id = client.post("/queries", json={"query": "segment-profile-rfm", "epsilon": 1.0}, headers=h).json()["id"]
    assert client.get(f"/jobs/{job_id}", headers=h).json()["task"] == "insights"
    assert client.get(f"/jobs/{job_id}", headers=_h(tokens["bound"])).status_code == 403  # not theirs
    assert client.get(f"/jobs/{job_id}", headers=_h(tokens["admin"])).status_code == 200


def test_insights_job_options_become_a_catalogue_batch():
    from fedinsight.tasks.insights.options import InsightsOptions

    options = InsightsOptions.from_run_config({"only": "ltv-tiers,segment-profile-rfm", "epsilon": 0.7,
                                               "as-of": "2025-06-30", "preset": "synthetic"})
    batch = options.resolve(requester="alice", batch_id="job-9").model_dump(mode="json")
    assert batch["batch_id"] == "job-9" and batch["epsilon"] == 0.7 and batch["requester"] == "alice"
    assert [q["name"] for q in batch["queries"]] == ["segment-profile-rfm", "ltv-tiers"]
    assert batch["features"]["as_of"] == "2025-06-30"


def test_out_of_range_ids_and_numbers_are_client_errors_never_5xx(state):
    client, tokens, _ = _client(state)  # the test client re-raises any server error
    analyst, auditor = _h(tokens["analyst"]), _h(tokens["auditor"])
    for path in ("/insights/%C2%B9", "/insights/99999999999999999999", "/insights/-1", "/insights/1e3"):
        assert client.get(path, headers=analyst).status_code == 404, path
    assert client.get("/insights?offset=9223372036854775808", headers=analyst).status_code == 422
    assert client.get("/audit?since=9223372036854775808", headers=auditor).status_code == 422
    assert client.get("/insights?offset=1000", headers=analyst).status_code == 200  # past the end: empty page

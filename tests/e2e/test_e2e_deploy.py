"""End to end on loopback with real processes: certs -> coordinator -> 3 partners -> jobs -> API (-> stop).

Every process is a real ``fedinsight`` command (which runs Flower's real ``flower-superlink`` and
``flower-supernode``); ports are chosen free at run time on 127.0.0.1; ``FLWR_HOME`` points into the
test's temporary folder. The deployment is the session's ``live`` one (tests/e2e/conftest.py): the restart test
uses it next and ends with the clean stop (SIGTERM by PID; PID files removed; the audit chain verified); every
process started in it is stopped by PID in the fixture's teardown, with all its descendants, also when an assertion
fails.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from tests.support.deployment import PARTNERS, Live

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_deployment_end_to_end(live: Live):
    dep, root, api = live.dep, live.dep.root, live.api
    assert api is not None
    assert (root / "coordinator-state" / "coordinator.pid").read_text().strip() == str(live.coordinator.pid)

    # A training job under SecAgg+ and DP-SGD and a DP insights job (two catalogue queries) run at the same
    # time on the three partners and both complete; the insights are stored under the job's id.
    submitted = dep.run("job", "run", "secure_training", "--federation", "marketing", "--config", "coordinator.toml",
                        "-o", "rounds=1", "-o", "local-steps=3", "-o", "sample-rate=0.1", "--no-follow", "--json")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr + dep.output("coordinator")
    training_id = json.loads(submitted.stdout[submitted.stdout.index("{"):])["id"]
    result = dep.run("job", "run", "insights", "--federation", "marketing", "--config", "coordinator.toml",
                     "-o", "epsilon=1.0", "-o", "only=segment-profile-rfm,ltv-tiers", "--json")
    assert result.returncode == 0, result.stdout + result.stderr + dep.output("coordinator")
    insights_job = json.loads(result.stdout[result.stdout.index("{"):])
    assert insights_job["status"] == "completed" and set(insights_job["epsilon_by_partner"]) == set(PARTNERS)
    deadline = time.monotonic() + 900  # a generous cap on a loaded machine: the loop ends as soon as the job does
    while True:
        status = dep.run("job", "status", training_id, "--config", "coordinator.toml", "--json")
        job = json.loads(status.stdout[status.stdout.index("{"):])
        if job["status"] in ("completed", "failed") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert job["status"] == "completed", job
    # nobody followed the training job: the coordinator wrote its report into the job folder itself
    training_output = root / "coordinator-state" / "jobs" / training_id / "output"
    assert "secure_training" in (training_output / "report.html").read_text()
    assert set(job["epsilon_by_partner"]) == set(PARTNERS) and all(e > 0 for e in job["epsilon_by_partner"].values())
    # Each partner also charged its own local ledger (enforced on the partner's side).
    for p in PARTNERS:
        assert (root / f"{p}-state" / "partner-ledger.db").is_file()

    # An unregistered partner key is refused by the SuperLink; the partner process says so and exits non-zero.
    intruder = dep.run("partner", "start", "--config", "intruder.toml", timeout=600)
    assert intruder.returncode != 0
    assert "refused this partner" in intruder.stdout + intruder.stderr
    assert not re.search(r"(DEBUG|INFO)[^\n]*:", intruder.stdout + intruder.stderr), intruder.stderr  # no chatter

    # Analysts read insights with a token; a wrong token is 401; an analyst on an auditor endpoint is 403.
    tokens, ids = {}, {}
    for role in ("analyst", "auditor"):
        out = dep.run("tokens", "create", f"{role}-e2e", "--role", role, "--config", "coordinator.toml", "--json")
        assert out.returncode == 0, out.stderr
        made = json.loads(out.stdout[out.stdout.index("{"):])
        tokens[role], ids[role] = made["token"], made["id"]
    # an auditor's token alone opens only POST /session: enrol its second factor, trade a TOTP code for a session
    out = dep.run("tokens", "mfa", "enrol", ids["auditor"], "--config", "coordinator.toml", "--json")
    assert out.returncode == 0, out.stderr
    secret = json.loads(out.stdout[out.stdout.index("{"):])["secret"]
    code = TOTP(base64.b32decode(secret), 6, hashes.SHA1(), 30).generate(time.time()).decode()
    assert api.get("/audit", headers={"Authorization": f"Bearer {tokens['auditor']}"}).status_code == 401
    opened = api.post("/session", headers={"Authorization": f"Bearer {tokens['auditor']}", "X-TOTP": code})
    assert opened.status_code == 201, opened.text
    tokens["auditor"] = opened.json()["token"]
    bearer = {role: {"Authorization": f"Bearer {t}"} for role, t in tokens.items()}
    page = api.get("/insights", headers=bearer["analyst"])
    assert page.status_code == 200
    released = {i["job_id"]: i for i in page.json()["items"]}
    assert {job["id"], insights_job["id"]} <= set(released)
    one = api.get(f"/insights/{released[insights_job['id']]['id']}", headers=bearer["analyst"])
    assert one.status_code == 200 and one.json()["kind"] in ("segment_profile", "ltv_tiers")

    # `job run` wrote the insights job's report into the coordinator's job folder; the API serves reports of
    # stored jobs to auditors (and requesters), not to an analyst who did not submit the job.
    assert insights_job.get("report") and Path(insights_job["report"]).is_file()
    served = api.get(f"/jobs/{insights_job['id']}/report", headers=bearer["auditor"])
    assert served.status_code == 200 and "Segment profile by RFM segment" in served.text
    assert 'data-chart="privacy-budget"' in served.text
    assert api.get(f"/jobs/{insights_job['id']}/report", headers=bearer["analyst"]).status_code == 403
    training_report = api.get(f"/jobs/{training_id}/report", headers=bearer["auditor"])
    assert training_report.status_code == 200 and "secure_training" in training_report.text
    assert api.get("/insights", headers={"Authorization": "Bearer fit_0000000000000000_nope"}).status_code == 401
    assert api.get("/audit", headers=bearer["analyst"]).status_code == 403
    verify = api.get("/audit/verify", headers=bearer["auditor"]).json()
    assert verify["ok"]
    actions = [e["action"] for e in api.get("/audit", params={"limit": 1000}, headers=bearer["auditor"]).json()]
    assert {"coordinator.start", "job.submit", "job.finish", "GET /insights", "GET /audit"} <= set(actions)
    assert all(p.poll() is None for p in live.partners)  # the partners keep running (the restart test needs them)

"""End to end on loopback with real processes: certs -> coordinator -> 3 partners -> jobs -> API -> stop.

Every process is a real ``fedinsight`` command (which runs Flower's real ``flower-superlink`` and
``flower-supernode``); ports are chosen free at run time on 127.0.0.1; ``FLWR_HOME`` points into the
test's temporary folder; every process started here is stopped by PID in the fixture's teardown, with
all its descendants, also when an assertion fails.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from fedinsight.core.procs import descendants, free_port, pid_alive, stop_tree
from fedinsight.federation.certs import init_certs

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PARTNERS = ("retail", "bank", "telco")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedinsight.cli", *args]


class Deployment:
    """A temporary deployment folder, the processes started in it, and their teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.env = {**os.environ, "FLWR_HOME": str(root / "flwr-home"), "FEDINSIGHT_HOME": str(root / "home"),
                    "NO_COLOR": "1", "COLUMNS": "200"}
        self.env.pop("FEDINSIGHT_COORDINATOR_CONFIG", None)
        self.link_port, self.api_port = free_port(), free_port()

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(_cli(*args), cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(_cli(*args), cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def output(self, name: str) -> str:
        return (self.root / f"{name}.out").read_text(errors="replace")

    def stop_all(self) -> list[int]:
        """SIGTERM each started process (as the CLI's own stop does), then make sure its whole tree is gone."""
        tree = [p for proc in self.procs for p in descendants(proc.pid)]
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                stop_tree(proc, timeout=5)
        leftovers = [p for p in tree if pid_alive(p)]
        for pid in leftovers:  # only processes this test started (descendants of its own children)
            os.kill(pid, signal.SIGKILL)
        return leftovers


def _write_configs(root: Path, dep: Deployment) -> None:
    from fedinsight.data.synth import SynthConfig, write_synthetic

    init_certs(root / "certs", hosts=["localhost", "127.0.0.1"], partners=[*PARTNERS, "intruder"])
    from fedinsight.partner.protection import init_partner

    write_synthetic(SynthConfig(customers=1800, partners=3, seed=5), root / "data")
    for k in range(3):  # each partner's protection policy (drops the planted direct identifiers)
        init_partner(root / "data" / f"partner-{k}")
    partners = "".join(f'[[partners]]\nid = "{p}"\npublic-key = "certs/partners/{p}.pub"\nepsilon = 8.0\n\n'
                       for p in PARTNERS)
    (root / "coordinator.toml").write_text(
        f'[coordinator]\nfederation = "marketing"\nstate-dir = "coordinator-state"\n\n'
        f'[superlink]\nhost = "127.0.0.1"\nport = {dep.link_port}\n\n'
        f'[tls]\nca-cert = "certs/ca.crt"\ncert = "certs/coordinator.crt"\nkey = "certs/coordinator.key"\n\n'
        f'[api]\nhost = "127.0.0.1"\nport = {dep.api_port}\n\n{partners}')
    for i, pid in enumerate([*PARTNERS, "intruder"]):
        data = f"data/partner-{min(i, 2)}"
        (root / f"{pid}.toml").write_text(
            f'[partner]\nid = "{pid}"\ndata-path = "{data}"\nstate-dir = "{pid}-state"\nepsilon = 8.0\n\n'
            f'[superlink]\naddress = "127.0.0.1:{dep.link_port}"\nca-cert = "certs/ca.crt"\n'
            f'private-key = "certs/partners/{pid}.key"\nmax-wait-time = 60\n\n'
            f'[runtime]\nport = {free_port()}\n')


def _wait_for_api(dep: Deployment, client: httpx.Client, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert dep.procs[0].poll() is None, f"coordinator exited:\n{dep.output('coordinator')}"
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the API did not come up:\n{dep.output('coordinator')}")


@pytest.fixture()
def deployment(tmp_path):
    dep = Deployment(tmp_path)
    _write_configs(tmp_path, dep)
    try:
        yield dep
    finally:
        leftovers = dep.stop_all()
        assert not leftovers, f"processes survived their parent's stop: {leftovers}"


def test_deployment_end_to_end(deployment: Deployment):
    dep, root = deployment, deployment.root
    coordinator = dep.spawn("coordinator", "coordinator", "start", "--config", "coordinator.toml")
    api = httpx.Client(base_url=f"https://127.0.0.1:{dep.api_port}", verify=str(root / "certs" / "ca.crt"),
                       timeout=120)
    _wait_for_api(dep, api)
    assert (root / "coordinator-state" / "coordinator.pid").read_text().strip() == str(coordinator.pid)
    partners = [dep.spawn(p, "partner", "start", "--config", f"{p}.toml") for p in PARTNERS]

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

    # Stop everything by PID (SIGTERM, as `coordinator stop` / `partner stop` do); PID files are removed.
    for proc in [*partners, coordinator]:
        proc.send_signal(signal.SIGTERM)
    for proc in [*partners, coordinator]:
        assert proc.wait(timeout=180) == 0, dep.output("coordinator")
    assert not (root / "coordinator-state" / "coordinator.pid").exists()
    assert "coordinator stopped" in dep.output("coordinator")
    assert dep.run("audit", "verify", "--config", "coordinator.toml").returncode == 0

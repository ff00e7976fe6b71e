"""Faults with real processes on loopback: ``kill -9`` of the coordinator, a restart with live partners.

The coordinator is killed with SIGKILL (it cannot stop anything itself): every process its PID files named
(SuperLink, API, their Flower helpers) must be gone, polled by PID with a generous bound (no timing is
asserted). A plain ``coordinator start`` then works with no manual cleanup, the three partner processes
(which were never restarted) reconnect on their own, and a job runs on all three. Every process started
here is stopped by PID in the fixture's teardown.
"""

from __future__ import annotations

import json
import re
import signal
import time

import httpx
import pytest

from fedinsight.core.children import ChildRecords
from fedinsight.core.procs import pid_alive
from tests.support.deployment import PARTNERS, Deployment, wait_for_api

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _wait(condition, what: str, bound: float = 600.0) -> None:
    """Poll until true; the bound only keeps a broken run from hanging."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.5)


def _admissions(dep: Deployment, partner: str) -> int:
    log = dep.root / f"{partner}-state" / "logs" / "supernode.log"
    return log.read_text(errors="replace").count("SuperNode ID:") if log.is_file() else 0


def test_kill_9_then_restart_with_live_partners(deployment: Deployment):
    dep, root = deployment, deployment.root
    first = dep.spawn("coordinator", "coordinator", "start", "--config", "coordinator.toml")
    api = httpx.Client(base_url=f"https://127.0.0.1:{dep.api_port}", verify=str(root / "certs" / "ca.crt"),
                       timeout=60)
    wait_for_api(dep, api)
    partners = [dep.spawn(p, "partner", "start", "--config", f"{p}.toml") for p in PARTNERS]
    _wait(lambda: all(_admissions(dep, p) >= 1 for p in PARTNERS), "the partners to be admitted")

    records = ChildRecords(root / "coordinator-state" / "pids")
    children = records.alive()
    assert {r.child for r in children} == {"superlink", "api"}, children
    first.send_signal(signal.SIGKILL)
    first.wait()
    _wait(lambda: not any(pid_alive(r.pid) for r in children), f"the coordinator's children {children} to exit")

    # a plain start: no manual cleanup; the stale PID file and the ports are no obstacle
    dep.procs.remove(first)
    dep.spawn("coordinator-2", "coordinator", "start", "--config", "coordinator.toml")
    dep.procs.insert(0, dep.procs.pop())  # wait_for_api watches procs[0]
    wait_for_api(dep, api)
    out = dep.output("coordinator-2")
    assert "Traceback" not in out and "already running" not in out and "held by" not in out, out

    # the partner processes were never restarted: each restarts its SuperNode and is admitted again
    _wait(lambda: all(_admissions(dep, p) >= 2 for p in PARTNERS), "the partners to reconnect")
    assert all(p.poll() is None for p in partners)
    for p in PARTNERS:
        assert "starting it again" in dep.output(p), dep.output(p)
    # the node id each partner's SuperNode was admitted under is the one the coordinator recorded for its key
    recorded = json.loads((root / "coordinator-state" / "partner-nodes.json").read_text())
    for p in PARTNERS:
        log = (root / f"{p}-state" / "logs" / "supernode.log").read_text(errors="replace")
        assert re.findall(r"SuperNode ID: (\d+)", log)[-1] == str(recorded[p]), (p, recorded)
    result = dep.run("job", "run", "preflight", "--federation", "marketing", "--config", "coordinator.toml",
                     "--json")
    assert result.returncode == 0, result.stdout + result.stderr + dep.output("coordinator-2")
    job = json.loads(result.stdout[result.stdout.index("{"):])
    assert job["status"] == "completed", job

    stopped = dep.run("coordinator", "stop", "--config", "coordinator.toml", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout[stopped.stdout.index("{"):])["state"] == "stopped"
    assert records.alive() == []

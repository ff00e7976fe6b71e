"""Faults with real processes on loopback: ``kill -9`` of the coordinator, a restart with live partners, the stop.

The coordinator is killed with SIGKILL (it cannot stop anything itself): every process its PID files named
(SuperLink, API, their Flower helpers) must be gone, polled by PID with a generous bound (no timing is
asserted). A plain ``coordinator start`` then works with no manual cleanup, the three partner processes
(which were never restarted) reconnect on their own, and a job runs on all three. Then everything stops cleanly by
PID (SIGTERM, as ``partner stop`` and ``coordinator stop`` send it): each process exits 0, PID files are removed and
the audit chain verifies. The deployment is the session's ``live`` one (tests/e2e/conftest.py), after the deploy
test's jobs; every process started in it is stopped by PID in the fixture's teardown.
"""

from __future__ import annotations

import json
import re
import signal

import pytest

from fedinsight.core.children import ChildRecords
from fedinsight.core.procs import pid_alive
from tests.support.deployment import PARTNERS, Live, admissions, wait_for_api, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_kill_9_then_restart_with_live_partners_then_a_clean_stop(live: Live):
    try:
        _kill_restart_and_stop(live)
    finally:  # the last user of the shared deployment: nothing of it runs on through the rest of the session
        live.leftovers += live.dep.stop_all()


def _kill_restart_and_stop(live: Live) -> None:
    dep, root, api, first, partners = live.dep, live.dep.root, live.api, live.coordinator, live.partners
    assert api is not None and all(p.poll() is None for p in partners)
    admitted = {p: admissions(dep, p) for p in PARTNERS}
    assert all(n >= 1 for n in admitted.values()), admitted

    records = ChildRecords(root / "coordinator-state" / "pids")
    children = records.alive()
    assert {r.child for r in children} == {"superlink", "api"}, children
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_until(lambda: not any(pid_alive(r.pid) for r in children), f"the coordinator's children {children} to exit")

    # a plain start: no manual cleanup; the stale PID file and the ports are no obstacle
    dep.procs.remove(first)
    second = dep.spawn("coordinator-2", "coordinator", "start", "--config", "coordinator.toml")
    dep.procs.insert(0, dep.procs.pop())  # wait_for_api watches procs[0]
    live.coordinator = second
    wait_for_api(dep, api)
    out = dep.output("coordinator-2")
    assert "Traceback" not in out and "already running" not in out and "held by" not in out, out

    # the partner processes were never restarted: each restarts its SuperNode and is admitted again
    wait_until(lambda: all(admissions(dep, p) > admitted[p] for p in PARTNERS), "the partners to reconnect")
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

    # Stop everything by PID (SIGTERM): the partners, then the coordinator by `coordinator stop`; every process
    # exits 0 and PID files are removed.
    for proc in partners:
        proc.send_signal(signal.SIGTERM)
    for proc in partners:
        assert proc.wait(timeout=180) == 0, dep.output("coordinator-2")
    stopped = dep.run("coordinator", "stop", "--config", "coordinator.toml", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout[stopped.stdout.index("{"):])["state"] == "stopped"
    assert records.alive() == []
    assert second.wait(timeout=180) == 0, dep.output("coordinator-2")
    assert not (root / "coordinator-state" / "coordinator.pid").exists()
    assert "coordinator stopped" in dep.output("coordinator-2")
    assert dep.run("audit", "verify", "--config", "coordinator.toml").returncode == 0

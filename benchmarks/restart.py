"""Faults with real processes: ``kill -9`` of the coordinator, a plain restart, live partners reconnecting.

One deployment on loopback (certificates, synthetic data for 3 partners, the real ``fedinsight coordinator
start`` / ``partner start`` commands, Flower's real SuperLink and SuperNodes). It measures, in one run:

* how long the coordinator's children (SuperLink, API and their Flower helpers, as named by its PID files)
  take to exit after the coordinator is killed with SIGKILL, and how many are left;
* how long a plain ``coordinator start`` then takes until the API answers (no cleanup in between);
* how long until all three partner processes, never restarted, have their SuperNodes admitted again;
* a ``preflight`` job on the three partners after the restart (status and seconds).

The audit of issue 19 on main is printed beside it: 4 orphans (SuperLink, API, SuperExec, ServerApp) and a
restart that failed with "port already in use"; every partner process exited after a coordinator restart.

Run: ``FLWR_TELEMETRY_ENABLED=0 ... nice -n 10 .venv/bin/python benchmarks/restart.py`` (about 4 minutes on
2 shared cores). Every process started is stopped by PID before it exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BEFORE = {"orphans_after_kill_9": 4, "restart_after_kill_9": "failed: port already in use (misleading)",
          "partners_after_coordinator_restart": "every partner process exited (SuperNode heartbeat 401)"}


def _until(condition: Any, what: str, bound: float = 900.0) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > bound:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - start


def _healthy(url: str, ca: Path) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", verify=str(ca), timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def run(root: Path) -> dict[str, Any]:
    from fedinsight.core.children import ChildRecords
    from fedinsight.core.procs import pid_alive
    from tests.support.deployment import PARTNERS, Deployment, write_configs

    dep = Deployment(root)
    write_configs(root, dep)
    url, ca = f"https://127.0.0.1:{dep.api_port}", root / "certs" / "ca.crt"

    def admitted(p: str) -> int:
        log = root / f"{p}-state" / "logs" / "supernode.log"
        return log.read_text(errors="replace").count("SuperNode ID:") if log.is_file() else 0

    try:
        first = dep.spawn("coordinator", "coordinator", "start", "--config", "coordinator.toml")
        first_up = _until(lambda: _healthy(url, ca), "the API")
        for p in PARTNERS:
            dep.spawn(p, "partner", "start", "--config", f"{p}.toml")
        _until(lambda: all(admitted(p) >= 1 for p in PARTNERS), "the partners")
        time.sleep(3)  # let the watch loop record the children's latest trees
        children = ChildRecords(root / "coordinator-state" / "pids").alive()

        first.send_signal(signal.SIGKILL)
        first.wait()
        exited = _until(lambda: not any(pid_alive(r.pid) for r in children), "the children to exit", bound=120)
        left = [r for r in children if pid_alive(r.pid)]

        restarted = time.monotonic()
        dep.spawn("coordinator-2", "coordinator", "start", "--config", "coordinator.toml")
        api_up = _until(lambda: _healthy(url, ca), "the restarted API")
        readmitted = _until(lambda: all(admitted(p) >= 2 for p in PARTNERS), "the partners to reconnect")
        readmitted += api_up
        partners_alive = sum(proc.poll() is None for proc in dep.procs[1:4])

        job_start = time.monotonic()
        job = dep.run("job", "run", "preflight", "--federation", "marketing", "--config", "coordinator.toml",
                      "--json")
        payload = json.loads(job.stdout[job.stdout.index("{"):]) if "{" in job.stdout else {}
        return {
            "children_recorded": [f"{r.child}: {r.name}" for r in children],
            "children_left_after_kill_9": len(left),
            "children_exit_s": round(exited, 1),
            "first_start_to_api_s": round(first_up, 1),
            "restart_to_api_s": round(api_up, 1),
            "restart_to_all_partners_readmitted_s": round(readmitted, 1),
            "restart_total_s": round(time.monotonic() - restarted, 1),
            "partner_processes_alive": f"{partners_alive} of {len(PARTNERS)}",
            "job_after_restart": {"status": payload.get("status", f"exit {job.returncode}"),
                                  "seconds": round(time.monotonic() - job_start, 1)},
        }
    finally:
        left_over = dep.stop_all()
        if left_over:
            print(f"warning: stopped leftovers {left_over}", file=sys.stderr)


def main() -> None:
    for name, value in {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "RAY_USAGE_STATS_ENABLED": "0"}.items():
        os.environ.setdefault(name, value)
    with tempfile.TemporaryDirectory(prefix="fedinsight-restart-") as tmp:
        after = run(Path(tmp))
    print(json.dumps({"load_average_1m": round(os.getloadavg()[0], 1), "before (main, issue 19 audit)": BEFORE,
                      "now": after}, indent=2))


if __name__ == "__main__":
    main()

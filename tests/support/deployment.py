"""A real deployment on loopback for end-to-end tests and benchmarks: certificates, synthetic partner data,
``coordinator.toml`` and one ``partner.toml`` per partner in a temporary folder, and the processes started in it.

Every process is a real ``fedinsight`` command (which runs Flower's real ``flower-superlink`` and
``flower-supernode``); ports are chosen free at run time on 127.0.0.1; ``FLWR_HOME`` points into the folder.
Whoever starts processes through :class:`Deployment` stops them with :meth:`Deployment.stop_all` (by PID, with
all their descendants).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fedinsight.core.procs import descendants, free_port, pid_alive, stop_tree
from fedinsight.federation.certs import init_certs

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


@dataclass
class Live:
    """A running deployment: its folder and processes, the coordinator's process, the partners' processes and an
    HTTPS client of the coordinator's API."""

    dep: Deployment
    coordinator: subprocess.Popen
    partners: list[subprocess.Popen] = field(default_factory=list)
    api: httpx.Client | None = None
    leftovers: list[int] = field(default_factory=list)  # processes that survived a stop before the fixture's own


def write_configs(root: Path, dep: Deployment) -> None:
    from fedinsight.data.synth import SynthConfig, write_synthetic

    init_certs(root / "certs", hosts=["localhost", "127.0.0.1"], partners=[*PARTNERS, "intruder"])
    from fedinsight.partner.policy_init import init_partner

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


def wait_until(condition: Callable[[], bool], what: str, bound: float = 600.0) -> None:
    """Poll until true; the bound only keeps a broken run from hanging (no timing is asserted)."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.5)


def admissions(dep: Deployment, partner: str) -> int:
    """How many times the partner's SuperNode was admitted by the SuperLink (its log's ``SuperNode ID:`` lines)."""
    log = dep.root / f"{partner}-state" / "logs" / "supernode.log"
    return log.read_text(errors="replace").count("SuperNode ID:") if log.is_file() else 0


def wait_for_api(dep: Deployment, client: httpx.Client, timeout: float = 600) -> None:
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

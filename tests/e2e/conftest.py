"""The end-to-end tests' one deployment on loopback, shared by the deploy and the restart test.

Why shared: starting a coordinator and admitting three partners (certificates, synthetic partner data, a SuperLink,
an API, three SuperNodes importing the ClientApp) takes about a minute on two cores, and both tests need exactly
that. ``test_e2e_deploy.py`` runs its jobs and API checks on it first; ``test_e2e_restart.py`` then kills the
coordinator with ``kill -9``, restarts it, runs a job on the partners that reconnected on their own, and stops
everything cleanly. Run alone, either test gets a fresh deployment.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.deployment import PARTNERS, Deployment, Live, admissions, wait_for_api, wait_until, write_configs


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    """The coordinator started and the three partners admitted; every process started in the deployment is stopped
    by PID at the end (also when an assertion fails), and none may survive its parent's stop."""
    root = tmp_path_factory.mktemp("deployment")
    dep = Deployment(root)
    write_configs(root, dep)
    leftovers: list[int] = []  # shared with the test that stops the deployment early (Live.leftovers)
    try:
        coordinator = dep.spawn("coordinator", "coordinator", "start", "--config", "coordinator.toml")
        api = httpx.Client(base_url=f"https://127.0.0.1:{dep.api_port}", verify=str(root / "certs" / "ca.crt"),
                           timeout=120)
        wait_for_api(dep, api)
        partners = [dep.spawn(p, "partner", "start", "--config", f"{p}.toml") for p in PARTNERS]
        wait_until(lambda: all(admissions(dep, p) >= 1 for p in PARTNERS), "the partners to be admitted")
        yield Live(dep, coordinator, partners, api, leftovers)
    finally:
        leftovers += dep.stop_all()
    assert not leftovers, f"processes survived their parent's stop: {leftovers}"

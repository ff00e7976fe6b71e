"""Shared fixtures. Built-in datasets come from `make test`'s `fedinsight data fetch all` step."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")


@pytest.fixture(scope="session")
def cdnow():
    from fedinsight.data import load_cdnow

    return load_cdnow()


@pytest.fixture(scope="session")
def movielens():
    from fedinsight.data import load_movielens_100k

    return load_movielens_100k()


@pytest.fixture(scope="session")
def simulated_runs(tmp_path_factory):
    """Short CLI simulations of every task with a report section, each run once per session (support/runs.py)."""
    from support.runs import SimulatedRuns

    return SimulatedRuns(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def shared_own_federation(tmp_path_factory):
    """One own federation (support/federations.py, 2,400 customers) for the tests that only read it."""
    from support.federations import own_federation

    return own_federation(tmp_path_factory.mktemp("own-shared") / "partners")


@pytest.fixture(scope="session")
def own_simulations(shared_own_federation, tmp_path_factory):
    """Each task simulated once through the Python API on the shared own federation (support/federations.py)."""
    from support.federations import OwnSimulations

    return OwnSimulations(shared_own_federation, tmp_path_factory.mktemp("own-runs"))

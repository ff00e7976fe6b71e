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

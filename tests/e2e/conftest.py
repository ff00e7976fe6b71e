"""Fixtures of the end-to-end tests that start real processes."""

from __future__ import annotations

import pytest

from tests.support.deployment import Deployment, write_configs


@pytest.fixture()
def deployment(tmp_path):
    """A deployment folder (certificates, synthetic partners, configs); every process started in it is stopped by
    PID at the end, and none may survive its parent's stop."""
    dep = Deployment(tmp_path)
    write_configs(tmp_path, dep)
    try:
        yield dep
    finally:
        leftovers = dep.stop_all()
        assert not leftovers, f"processes survived their parent's stop: {leftovers}"

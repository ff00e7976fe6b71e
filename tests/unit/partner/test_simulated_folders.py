"""A simulated partner finds its folder from a listing made once per job (not a scan of the root per message)."""

from __future__ import annotations

import os

import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.partner import side


def _partner(root, name):
    (root / name).mkdir()
    (root / name / "mapping.toml").write_text("")  # a folder with a mapping is a partner folder


def test_listing_is_reused_within_a_job_and_refreshed_when_the_root_changes(tmp_path, monkeypatch):
    for name in ("b-shop", "d-bank"):
        _partner(tmp_path, name)
    scans = []
    real = side.partner_folders
    monkeypatch.setattr(side, "partner_folders", lambda root: scans.append(root) or real(root))
    side._folders.cache_clear()
    assert side._simulated_folder(str(tmp_path), 1, "job-1").name == "d-bank"
    assert side._simulated_folder(str(tmp_path), 0, "job-1").name == "b-shop"
    assert len(scans) == 1  # every further message of the job: no scan

    _partner(tmp_path, "c-telco")  # a partner folder added under the root: its mtime changes, listed again
    stamp = tmp_path.stat().st_mtime_ns + 1_000_000
    os.utime(tmp_path, ns=(stamp, stamp))  # (a coarse file system clock could leave the mtime unchanged)
    assert side._simulated_folder(str(tmp_path), 1, "job-1").name == "c-telco"
    assert side._simulated_folder(str(tmp_path), 1, "job-2").name == "c-telco"  # a new job lists afresh
    assert len(scans) == 3


def test_a_partition_without_folder_is_the_views_error(tmp_path):
    _partner(tmp_path, "only")
    side._folders.cache_clear()
    with pytest.raises(ConfigError, match="simulated partner 3 has no folder.*holds 1 partner folders"):
        side._simulated_folder(str(tmp_path), 3, "job-1")

"""A command's output is fedinsight's own: Flower's and Ray's DEBUG/INFO lines only with ``--verbose``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).with_name("fedinsight")
FLOWER_LINE = re.compile(r"(^|\s|\x1b\[\d+m)(DEBUG|INFO)\b[^\n]*:", re.MULTILINE)


def _simulate(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), "simulate", "preflight", "--dataset", "synthetic", "--customers", "600",
                           "--partners", "2", "--out", str(out), "--overwrite", *extra],
                          capture_output=True, text=True, check=False, timeout=900)


@pytest.mark.slow
def test_simulate_prints_no_flower_log_lines_unless_verbose(tmp_path):
    quiet = _simulate(tmp_path / "run")
    assert quiet.returncode == 0, quiet.stderr
    assert "Protection check" in quiet.stdout and "report:" in quiet.stderr  # the command did speak
    assert not FLOWER_LINE.search(quiet.stdout + quiet.stderr), quiet.stdout + quiet.stderr

    verbose = _simulate(tmp_path / "run", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    lines = FLOWER_LINE.findall(verbose.stderr)
    assert lines and {level for _, level in lines} >= {"DEBUG"}, verbose.stderr
    assert "Registered 2 nodes" in verbose.stderr
    # each line once: Flower's records do not also reach the root handler Opacus installs
    assert verbose.stderr.count("Registered 2 nodes") == 1, verbose.stderr

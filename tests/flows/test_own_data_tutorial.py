"""docs/own-data.md, run as written: every block marked ``<!-- tested -->``, in order, in an empty folder.

The folder gets a link to the repository's ``examples/`` (the tutorial's commands name ``examples/...``); nothing
else is substituted. ``fedinsight`` lines run through the CLI's ``main`` (in this process), ``python`` lines in a
subprocess, ``cp`` with shutil; python blocks are executed. Then the outputs must exist and speak the exports'
own names.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support.exports import EXAMPLES

from fedinsight.cli import main

DOC = EXAMPLES.parent / "docs" / "own-data.md"
BLOCK = re.compile(r"<!-- tested -->\s*```(bash|python)\n(.*?)```", re.S)


def tutorial_blocks(text: str) -> list[tuple[str, str]]:
    """The tested blocks of the tutorial, in order: (language, code)."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def run_line(line: str, folder: Path) -> None:
    """One command of a bash block, as a user would run it in ``folder``."""
    argv = shlex.split(line)
    if argv[0] == "fedinsight":
        code = main(argv[1:])
        assert code == 0, f"exit {code}: {line}"
    elif argv[0] == "python":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES.parent), os.environ.get("PYTHONPATH", "")])}
        subprocess.run([sys.executable, *argv[1:]], cwd=folder, env=env, check=True)
    elif argv[0] == "cp":
        shutil.copyfile(folder / argv[1], folder / argv[2])
    else:
        raise AssertionError(f"the tutorial test does not know how to run: {line}")


def run_tutorial(folder: Path) -> None:
    """Every tested block of docs/own-data.md, in ``folder`` (which must be the current directory)."""
    (folder / "examples").symlink_to(EXAMPLES, target_is_directory=True)
    for language, code in tutorial_blocks(DOC.read_text(encoding="utf-8")):
        if language == "bash":
            for line in code.replace("\\\n", " ").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    run_line(line, folder)
        else:
            exec(compile(code, "docs/own-data.md", "exec"), {"__name__": "tutorial"})  # noqa: S102


def test_the_tutorial_marks_its_commands_for_this_test():
    blocks = tutorial_blocks(DOC.read_text(encoding="utf-8"))
    commands = " ".join(code for _, code in blocks)
    for step in ("partner map --suggest", "data validate", "partner check", "simulate propensity", "insights plan",
                 "insights run", "simulate recommend", "partner export targets", "model.targets("):
        assert step in commands, step


@pytest.mark.slow
def test_the_own_data_tutorial_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_tutorial(tmp_path)
    printed = capsys.readouterr().out
    exports = tmp_path / "exports"
    assert (exports / "华东零售" / "protection.toml").is_file() and (exports / "us-shop" / "protection.toml").is_file()
    summary = json.loads((tmp_path / "runs" / "propensity" / "summary.json").read_text())
    assert 0.5 < summary["metrics"]["federated_exact"]["auc"] <= 1  # the released model, evaluated exactly
    released = summary["metrics"]["federated"]  # the DP evaluation: noisy at this size, may be missing
    assert released.get("auc") is None or 0 <= released["auc"] <= 1
    report = (tmp_path / "runs" / "insights" / "report.html").read_text(encoding="utf-8")
    for name in ("618大促", "Spring Promo 1", "微信", "email", "门店"):  # the exports' own campaigns and channels
        assert name in report, name
    assert (tmp_path / "runs" / "recommend" / "model" / "items.npz").is_file()
    members = pd.read_csv(exports / "华东零售" / "会员信息.csv", encoding="gb18030", dtype=str)
    cn = pd.read_csv(tmp_path / "targets-cn.csv", dtype=str)
    consenting = set(members.loc[members["是否同意营销"] == "是", "会员手机号"])
    assert len(cn) > 0 and set(cn["customer_id"]) <= consenting  # the retailer's own member phone numbers
    assert cn["contact"].str.endswith("@example.cn").all() and cn["recommended_items"].str.len().gt(0).any()
    us = pd.read_parquet(tmp_path / "targets-us.parquet")
    assert len(us) == 100 and (us["contact"] == us["customer_id"]).all()
    assert "ab-lift" in printed and "recommended_items" in printed  # the Python block's output

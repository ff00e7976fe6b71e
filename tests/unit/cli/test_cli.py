"""The command line: user mistakes exit with a code and one clear message, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedinsight.cli import main

BIN = Path(sys.executable).with_name("fedinsight")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, check=False)


def test_misspelled_column_exits_2_with_one_line(tmp_path):
    path = tmp_path / "transactions.csv"
    path.write_text("customer_id,timestamp,amount,qantity\nc1,2024-01-01,1,1\n")
    proc = run("data", "validate", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "'quantity'" in lines[0] and "qantity" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_validate_reports_all_problems_and_valid_files(tmp_path):
    (tmp_path / "customers.csv").write_text("customer_id,consent\na,true\n")
    assert main(["data", "validate", str(tmp_path)]) == 0
    (tmp_path / "events.csv").write_text("customer_id,timestamp\na,2024-01-01\n")
    (tmp_path / "transactions.csv").write_text("customer_id,timestamp,amount,quantity\na,bad,1,1\n")
    proc = run("data", "validate", str(tmp_path))
    assert proc.returncode == 2 and "4 problems found" in proc.stderr  # 3 missing event columns + 1 date


def test_bad_options_exit_nonzero_without_traceback(tmp_path):
    proc = run("data", "partition", "--dataset", "nope", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "neither a built-in" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
    proc = run("data", "fetch", "imagenet")
    assert proc.returncode == 2 and "unknown dataset" in proc.stderr


def test_partition_writes_valid_partner_folders(tmp_path):
    out = tmp_path / "ml"
    assert main(["data", "partition", "--dataset", "movielens-100k", "--partners", "3",
                 "--partition", "natural", "--out", str(out), "--format", "csv"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["partner-0", "partner-1", "partner-2"]
    assert main(["data", "validate", str(out)]) == 0
    from fedinsight.data import load_federation

    parts = load_federation(out)
    assert sum(len(p.interactions) for p in parts.values()) == 100_000
    # refusing to overwrite keeps the existing output intact
    assert main(["data", "partition", "--dataset", "movielens-100k", "--out", str(out)]) == 2
    assert (out / "partner-2" / "interactions.csv").exists()


@pytest.mark.slow
def test_demo_prints_partner_tables_and_trains_with_dp(tmp_path):
    import json

    proc = run("demo", "--partners", "3", "--rounds", "2", "--out", str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stderr
    assert "cdnow" in proc.stdout and "movielens-100k" in proc.stdout and "partner-2" in proc.stdout
    assert "23,570" in proc.stdout  # CDNOW total customers
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["rounds"] == 2 and 0 < summary["privacy"]["epsilon_spent_max"] <= 1.0
    assert summary["metrics"]["federated"]["auc"] > 0.6  # a real model, well above chance on CDNOW
    report = tmp_path / "demo" / "report.html"
    assert report.is_file()
    assert proc.stdout.strip().splitlines()[-1].endswith(str(report.resolve())), "the demo ends with the report path"


def test_help_lists_commands():
    proc = run("--help")
    assert proc.returncode == 0 and "data" in proc.stdout and "demo" in proc.stdout


def _leaf_commands():
    import click
    import typer.main

    from fedinsight.cli import app

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), cmd

    return list(walk(typer.main.get_command(app), []))


# Long-running foreground processes print logs, not a result; the demo is a guided tour.
NO_JSON = {"coordinator start", "partner start", "demo"}


def test_every_command_has_an_example_and_json_output():
    commands = _leaf_commands()
    assert len(commands) > 30
    for path, cmd in commands:
        assert "Example: fedinsight" in (cmd.help or ""), f"`fedinsight {path} --help` has no example"
        if path not in NO_JSON:
            assert any("--json" in p.opts for p in cmd.params), f"`fedinsight {path}` has no --json"


def test_data_commands_print_json_for_scripts(tmp_path, capsys):
    import json

    assert main(["data", "fetch", "all", "--json"]) == 0
    fetched = json.loads(capsys.readouterr().out)
    assert {d["dataset"] for d in fetched["datasets"]} == {"cdnow", "movielens-100k"}
    assert main(["data", "partition", "--dataset", "movielens-100k", "--partners", "2", "--out",
                 str(tmp_path / "ml"), "--json"]) == 0
    parts = json.loads(capsys.readouterr().out)
    rows = {r["partner"]: r for r in parts["partners"]}
    assert set(rows) == {"partner-0", "partner-1", "total"}
    assert rows["partner-0"]["customers"] + rows["partner-1"]["customers"] == rows["total"]["customers"] == 943

"""A run that fails its task's check writes no summary, report or run record: only a FAILED.json marker.

Flower's runtime is replaced by a stub returning a preflight result in which one partner refused its data
(what a partner with a malformed table answers), so these tests exercise only the driver's writing path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fedinsight.core.errors import ConfigError, DataValidationError, Problem, ProtectionPolicyError
from fedinsight.simulation import run as driver
from fedinsight.simulation.options import SimulationOptions
from fedinsight.tasks import preflight

ROWS = "customer_id,timestamp,amount,quantity\n" + "".join(f"c{i},2024-01-0{1 + i % 9},{i + 1},1\n" for i in range(30))


def _folder(root: Path) -> Path:
    for name in ("alpha", "beta"):
        (root / name).mkdir(parents=True)
        (root / name / "transactions.csv").write_text(ROWS, encoding="utf-8")
    return root


def _result(refused: bool) -> dict[str, Any]:
    rows = [{"partner": "alpha", "status": "ok", "error": "", "policy": "", "dropped": [], "tokenized": []},
            {"partner": "beta", "status": "refused" if refused else "ok",
             "error": "DataValidationError: beta/transactions.csv: is a folder" if refused else "",
             "policy": "", "dropped": [], "tokenized": []}]
    return {"task": "preflight", "purpose": "analytics", "results": rows, "ok": not refused}


@pytest.fixture
def stub_runtime(monkeypatch):
    state: dict[str, bool] = {"refused": True}
    monkeypatch.setattr(driver, "run_simulation", lambda *a, **k: object())
    monkeypatch.setattr(driver, "result_of", lambda _context: _result(state["refused"]))
    return state


def test_failed_preflight_writes_only_a_failed_marker(tmp_path, stub_runtime):
    sim = SimulationOptions(dataset=str(_folder(tmp_path / "partners")), out=str(tmp_path / "run"))
    with pytest.raises(ProtectionPolicyError, match="beta: DataValidationError"):
        driver.simulate("preflight", sim, {})
    out = tmp_path / "run"
    for name in (*driver.RESULT_FILES, "preflight.json"):
        assert not (out / name).exists(), name
    marker = json.loads((out / driver.FAILED).read_text())
    assert marker["status"] == "failed" and marker["task"] == "preflight" and "beta" in marker["message"]
    with pytest.raises(ConfigError, match="holds a failed preflight run: some partners refused"):
        driver.Run.open(out)


def test_a_later_successful_run_clears_the_failed_marker(tmp_path, stub_runtime):
    sim = SimulationOptions(dataset=str(_folder(tmp_path / "partners")), out=str(tmp_path / "run"))
    with pytest.raises(ProtectionPolicyError):
        driver.simulate("preflight", sim, {})
    stub_runtime["refused"] = False
    run = driver.simulate("preflight", sim, {})
    assert run.summary["ok"] and (run.out_dir / "summary.json").is_file()
    assert not (run.out_dir / driver.FAILED).exists()


class _Partner:
    def data(self) -> Any:
        raise DataValidationError(Problem("t.csv", "expected a number", column="amount", rows=(2,),
                                          values=("SECRET-VALUE",)))


def test_preflight_refusal_carries_no_data_values(monkeypatch):
    monkeypatch.setattr(preflight, "reply", lambda _msg, **records: records)
    record = preflight.check(None, _Partner())[preflight.RECORD]  # type: ignore[arg-type,index]
    assert record["status"] == "refused" and "amount" in str(record["error"])
    assert "SECRET-VALUE" not in str(record["error"])


@pytest.mark.parametrize("broken", ["folder", "dangling link", "link loop", "pipe"])
def test_a_partner_table_that_cannot_be_read_stops_the_run_before_anything_is_written(tmp_path, broken, monkeypatch):
    """The audit's case: such a partner was skipped and 'simulate insights' charged epsilon without its table."""
    import os

    started: list[bool] = []
    monkeypatch.setattr(driver, "run_simulation", lambda *a, **k: started.append(True))
    root = _folder(tmp_path / "partners")
    table = root / "beta" / "transactions.csv"
    table.unlink()
    {"folder": table.mkdir, "dangling link": lambda: table.symlink_to(root / "gone.csv"),
     "link loop": lambda: table.symlink_to(table), "pipe": lambda: os.mkfifo(table)}[broken]()
    sim = SimulationOptions(dataset=str(root), out=str(tmp_path / "run"))
    with pytest.raises(DataValidationError, match="beta/transactions.csv"):
        driver.simulate("insights", sim, {})
    assert not started and not (tmp_path / "run").exists()

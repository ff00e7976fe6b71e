"""A deployed job whose task fails its own check (a preflight in which a partner refused its data) ends as a failed
job naming the refusing partners, and its output folder holds only the failed marker: no summary, no report.

The task's real ``check_result`` and the coordinator's real job lifecycle run; only the partners' replies are
written by hand (the summary a preflight's ``run`` returns), so no Flower runtime is started."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flwr.app import Context, RecordDict

from fedinsight.coordinator.jobs import job_lifecycle, job_output_dir
from fedinsight.coordinator.state import CoordinatorState
from fedinsight.core.errors import ProtectionPolicyError
from fedinsight.federation.job import JobSettings
from fedinsight.federation.outcome import FAILED
from fedinsight.federation.task import RESULT_KEY, conclude
from fedinsight.tasks.preflight import TASK as PREFLIGHT


def _summary(refusing: tuple[str, ...]) -> dict[str, Any]:
    rows = [{"partner": p, "status": "refused" if p in refusing else "ok",
             "error": "DataValidationError: transactions.csv: is a folder" if p in refusing else "",
             "policy": "", "dropped": [], "tokenized": []} for p in ("bank", "retail", "telco")]
    return {"task": "preflight", "purpose": "analytics", "results": rows, "ok": not refusing}


def _context() -> Context:
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})


@pytest.fixture()
def state(tmp_path, monkeypatch) -> CoordinatorState:
    state = CoordinatorState(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path)
    for key, value in state.env().items():
        monkeypatch.setenv(key, value)
    return state


def _job(state: CoordinatorState, tmp_path) -> tuple[str, Any]:
    job = state.jobs.create(task="preflight", federation="marketing", requester="operator",
                            run_config={"task": "preflight", "partners": 3})
    return job.id, job_output_dir(tmp_path, job.id)


def test_a_deployed_preflight_with_refusing_partners_is_a_failed_job_with_only_the_marker(state, tmp_path):
    job_id, out = _job(state, tmp_path)
    settings = JobSettings(task="preflight", partners=3, job_id=job_id, out_dir=str(out))
    with pytest.raises(ProtectionPolicyError), job_lifecycle({"job-id": job_id, "out-dir": str(out)}):
        conclude(PREFLIGHT, settings, _summary(("bank", "telco")), _context())
    job = state.jobs.get(job_id)
    assert job.status == "failed"
    assert "bank: DataValidationError" in job.error and "telco: DataValidationError" in job.error
    assert "retail" not in job.error  # only the refusing partners are named
    assert sorted(p.name for p in out.iterdir()) == [FAILED]  # no summary.json, report.html or run.json
    marker = json.loads((out / FAILED).read_text())
    assert marker["status"] == "failed" and marker["task"] == "preflight" and "bank" in marker["message"]
    finish = [e for e in state.audit.entries(limit=100) if e.action == "job.finish"]
    assert [(e.target, e.outcome) for e in finish] == [(job_id, "failed")]


def test_a_deployed_preflight_where_all_partners_load_completes(state, tmp_path):
    job_id, out = _job(state, tmp_path)
    settings = JobSettings(task="preflight", partners=3, job_id=job_id, out_dir=str(out))
    with job_lifecycle({"job-id": job_id, "out-dir": str(out)}):
        conclude(PREFLIGHT, settings, _summary(()), _context())
    assert state.jobs.get(job_id).status == "completed"
    assert (out / "summary.json").is_file() and not (out / FAILED).exists()


def test_a_simulated_refusal_is_left_to_the_driver_and_writes_no_summary(tmp_path):
    out = tmp_path / "run"
    settings = JobSettings(task="preflight", partners=3, out_dir=str(out), data_root=str(tmp_path / "partners"))
    context = _context()
    conclude(PREFLIGHT, settings, _summary(("bank",)), context)  # the driver checks it and writes the marker
    assert RESULT_KEY in context.state and not (out / "summary.json").exists()

"""The recalibration schedule (issue 16 item 4): which job is due at an injected time, never a period twice, the warm
start from the newest completed scheduled job, and bad schedules refused with a message saying what to fix."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from fedinsight.cli import main
from fedinsight.coordinator.job_store import JobRow, JobStore
from fedinsight.coordinator.schedule import (
    SCHEDULER,
    DueJob,
    RecalibrationSection,
    due,
    last_complete_period,
    submit_due,
)
from fedinsight.core.errors import ConfigError


@dataclass
class FakeJob:
    id: str
    cutoff: str
    status: str = "completed"
    requester: str = SCHEDULER
    task: str = "propensity"
    run_config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_config = {"cutoff": self.cutoff}


def _out(job_id: str) -> Path:
    return Path("/state/jobs") / job_id / "output"


QUARTER = RecalibrationSection(every="quarter", options={"epsilon": 0.5})


@pytest.mark.parametrize("every,now,period", [
    ("quarter", "2026-01-02T03:00", ("2025-10-01", "2026-01-01")),
    ("quarter", "2026-03-31T23:59", ("2025-10-01", "2026-01-01")),
    ("quarter", "2026-04-01T00:00", ("2026-01-01", "2026-04-01")),
    ("month", "2026-01-15T12:00", ("2025-12-01", "2026-01-01")),
    ("half-year", "2026-08-01T00:00", ("2026-01-01", "2026-07-01")),
    ("year", "2026-05-05T00:00", ("2025-01-01", "2026-01-01")),
])
def test_the_newest_complete_calendar_period(every, now, period):
    first, after = last_complete_period(every, datetime.fromisoformat(now))
    assert (first.isoformat(), after.isoformat()) == period


def test_first_job_from_scratch_then_warm_started_from_the_newest_completed_one():
    now = datetime(2026, 1, 2)
    job = due(QUARTER, [], now, _out)
    assert job is not None and job.warm_from is None
    assert job.options == {"epsilon": 0.5, "start": "2024-10-01", "cutoff": "2025-10-01", "end": "2026-01-01"}
    history = [FakeJob("j1", "2025-04-01"), FakeJob("j2", "2025-07-01", status="failed"),
               FakeJob("other", "2025-08-01", requester="operator")]  # a hand-run job is not the schedule's
    job = due(QUARTER, history, now, _out)
    assert job is not None and job.options["recalibrate-from"] == str(_out("j1")) and job.warm_from == _out("j1")
    # the period already has a scheduled job (whatever its status): nothing is due until the next quarter
    for status in ("running", "completed", "failed"):
        assert due(QUARTER, [*history, FakeJob("j3", "2025-10-01", status=status)], now, _out) is None
    later = due(QUARTER, [*history, FakeJob("j3", "2025-10-01")], datetime(2026, 4, 1), _out)
    assert later is not None and later.options["cutoff"] == "2026-01-01" and later.warm_from == _out("j3")


@pytest.mark.parametrize("section,message", [
    ('every = "fortnight"', "recalibration.every: .*'month', 'quarter', 'half-year' or 'year'"),
    ('every = "quarter"\ntask = "uplift"', "task 'uplift' cannot be recalibrated"),
    ('every = "quarter"\noptions = { cutoff = "2025-01-01" }', "options cannot set cutoff: the schedule sets"),
    ('every = "quarter"\nhistory-days = 5', "history-days: .*greater than or equal to 30"),
    ("task = \"propensity\"", "recalibration.every: .*required"),
])
def test_bad_schedules_are_refused_naming_what_to_fix(tmp_path, section, message):
    from fedinsight.coordinator.config import load_coordinator_config

    with pytest.raises(ConfigError, match=message):
        load_coordinator_config(_config(tmp_path, f"[recalibration]\n{section}\n"), check_files=False)


def _config(folder: Path, extra: str = "") -> Path:
    path = folder / "coordinator.toml"
    path.write_text(f'[coordinator]\nfederation = "marketing"\nstate-dir = "{folder / "state"}"\n'
                    '[tls]\nca-cert = "ca.crt"\ncert = "c.crt"\nkey = "c.key"\n'
                    '[[partners]]\nid = "retail"\npublic-key = "retail.pub"\nepsilon = 5.0\n' + extra)
    return path


def test_job_schedule_command_dry_run_and_a_config_without_a_schedule(tmp_path, capsys):
    assert main(["job", "schedule", "--config", str(_config(tmp_path)), "--dry-run"]) == 2
    assert "no [recalibration] section" in capsys.readouterr().err
    path = _config(tmp_path, '[recalibration]\nevery = "quarter"\noptions = { epsilon = 0.5 }\n')
    assert main(["job", "schedule", "--config", str(path), "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["due"] and out["task"] == "propensity" and "job" not in out  # nothing submitted
    assert out["options"]["cutoff"] == out["period"][0] < out["period"][1] == out["options"]["end"]
    assert out["warm_start_from"] is None and "recalibrate-from" not in out["options"]


def _record(store: JobStore, job: DueJob):
    return store.create(task=job.task, federation="marketing", run_config=job.options, requester=SCHEDULER,
                        schedule_period=job.period[0].isoformat())


def test_two_scheduler_runs_at_once_submit_a_period_once(tmp_path):
    """Two cron runs that both found the period due (the barrier holds each until the other has looked too): the
    unique (task, period) key lets exactly one record and start its job; the other records nothing."""
    url = f"sqlite:///{tmp_path / 'coordinator.db'}"
    JobStore(url)
    barrier = threading.Barrier(2)
    now = datetime(2026, 1, 2)

    def cron_run(_: int):
        store = JobStore(url)  # each run is its own process with its own connections

        def submit(job: DueJob):
            barrier.wait(timeout=30)
            return _record(store, job)

        return submit_due(QUARTER, store, now, _out, submit)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(cron_run, range(2)))
    submitted = [job for _, job in results if job is not None]
    assert len(submitted) == 1 and sorted(d is None for d, _ in results) == [False, True]
    store = JobStore(url)
    assert [j.id for j in store.by_requester("propensity", SCHEDULER)] == [submitted[0].id]
    assert store.period_job("propensity", "2025-10-01") == submitted[0].id
    assert submit_due(QUARTER, store, now, _out, lambda job: pytest.fail("submitted twice")) == (None, None)
    later, job = submit_due(QUARTER, store, datetime(2026, 4, 1), _out, lambda j: _record(store, j))
    assert later is not None and later.options["cutoff"] == "2026-01-01" and job is not None
    assert later.warm_from is None  # the first period's job has not completed


def test_a_period_is_found_by_its_key_however_many_jobs_came_after(tmp_path):
    store = JobStore(f"sqlite:///{tmp_path / 'coordinator.db'}")
    now = datetime(2026, 1, 2)
    first, _ = submit_due(QUARTER, store, now, _out, None)  # a dry run records nothing
    assert first is not None and store.by_requester("propensity", SCHEDULER) == []
    _, job = submit_due(QUARTER, store, now, _out, lambda j: _record(store, j))
    assert job is not None
    with Session(store.engine) as session, session.begin():  # 10,001 later jobs by hand (the old look-up saw 10,000)
        session.execute(insert(JobRow), [
            {"id": f"job-{i}", "task": "propensity", "federation": "marketing", "requester": "operator",
             "status": "completed", "run_config": "{}", "error": "", "created_at": datetime(2026, 1, 3)}
            for i in range(10_001)])
    assert submit_due(QUARTER, store, now, _out, lambda j: pytest.fail("submitted twice")) == (None, None)
    store.mark(job.id, "completed")
    nxt, _ = submit_due(QUARTER, store, datetime(2026, 4, 1), _out, None)
    assert nxt is not None and nxt.warm_from == _out(job.id)

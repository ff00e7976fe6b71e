"""Scheduled recalibration: ``[recalibration]`` in ``coordinator.toml`` and which job is due when.

Why a schedule: a propensity / LTV model trained once drifts as customers change; issue 16 asks for a re-fit on
the newest window every quarter, warm-started from the current model (``recalibrate-from``). The operator writes
the rule once::

    [recalibration]
    every = "quarter"                 # month | quarter | half-year | year
    task = "propensity"               # the task whose model is re-fitted (it must support recalibrate-from)
    history-days = 365                # features from this many days before the window's cutoff
    options = { epsilon = 0.5, rounds = 10 }   # the job's other options (never its window)

and ``fedinsight job schedule --config coordinator.toml`` (run daily by cron or a systemd timer) submits the job
that is due, if any: the newest *complete* calendar period before today (labels from its first day to its last),
warm-started from the newest completed scheduled job's model; the first one starts from scratch. A period that
already has a scheduled job (running, completed or failed) is never submitted twice: a failed period is the
operator's to re-run by hand. :func:`due` is a pure function of the config, the job list and ``now`` (the clock
is an argument), so the schedule is tested without waiting for a quarter.

"Due, then submit" is atomic (:func:`submit_due`): two cron runs at the same moment may both find a period due, but
the job row and its (task, period) row are written in one transaction under a unique key
(:class:`~fedinsight.coordinator.job_store.SchedulePeriodRow`), so only one records a job and starts it; the other
reports that nothing is due. The period is looked up by that key, not searched for in a list of recent jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from fedinsight.coordinator.job_store import Job, JobStore, PeriodTaken
from fedinsight.core.settings import Model as _Model

SCHEDULER = "schedule"
"""The requester recorded on scheduled jobs: how the scheduler finds its own earlier jobs."""
MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "half-year": 6, "year": 12}
WINDOW_KEYS = frozenset({"start", "cutoff", "end", "window-start", "window-cutoff", "window-end", "recalibrate-from"})
RECALIBRATING_TASKS = ("propensity",)
"""Tasks with a ``recalibrate-from`` option (warm start from a previous run and old-vs-new evaluation)."""


class RecalibrationSection(_Model):
    every: Literal["month", "quarter", "half-year", "year"]
    task: str = "propensity"
    history_days: int = Field(365, ge=30, le=3650)
    options: dict[str, bool | int | float | str] = {}

    @field_validator("task")
    @classmethod
    def _task(cls, value: str) -> str:
        if value not in RECALIBRATING_TASKS:
            raise ValueError(f"task '{value}' cannot be recalibrated (tasks with recalibrate-from: "
                             f"{', '.join(RECALIBRATING_TASKS)})")
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, Any]) -> dict[str, Any]:
        if clash := sorted(WINDOW_KEYS & {k.replace("_", "-") for k in value}):
            raise ValueError(f"options cannot set {', '.join(clash)}: the schedule sets each job's window and the "
                             "model it starts from")
        return value


@dataclass(frozen=True)
class DueJob:
    """The job a schedule wants now: its task and run-config options (window and warm start included)."""

    task: str
    options: dict[str, Any]
    period: tuple[date, date]  # first day, day after the last
    warm_from: Path | None


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _first_day(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def last_complete_period(every: str, now: datetime) -> tuple[date, date]:
    """The newest calendar period (months aligned on January) that ended on or before ``now``'s date: (first day,
    day after its last)."""
    months = MONTHS[every]
    current = _month_index(now.date()) // months * months  # the period ``now`` is in
    return _first_day(current - months), _first_day(current)


def due(section: RecalibrationSection, jobs: Sequence[Any], now: datetime,
        output_dir: Any) -> DueJob | None:
    """The job to submit at ``now``, or None when the newest complete period already has a scheduled job.

    ``jobs``: the coordinator's job rows (``task``, ``requester``, ``status``, ``run_config``, ``id``);
    ``output_dir(job_id)``: where a job's run folder is (the warm start reads the model there).
    """
    first, after = last_complete_period(section.every, now)
    mine = [j for j in jobs if j.task == section.task and j.requester == SCHEDULER]
    if any(str(j.run_config.get("cutoff", "")) == first.isoformat() for j in mine):
        return None
    done = [j for j in mine if j.status == "completed" and str(j.run_config.get("cutoff", "")) < first.isoformat()]
    newest = max(done, key=lambda j: str(j.run_config.get("cutoff", "")), default=None)
    warm = Path(output_dir(newest.id)) if newest is not None else None
    options = {**section.options, "start": (first - timedelta(days=section.history_days)).isoformat(),
               "cutoff": first.isoformat(), "end": after.isoformat()}
    if warm is not None:
        options["recalibrate-from"] = str(warm)
    return DueJob(section.task, options, (first, after), warm)


def submit_due(section: RecalibrationSection, store: JobStore, now: datetime, output_dir: Any,
               submit: Callable[[DueJob], Job] | None) -> tuple[DueJob | None, Job | None]:
    """(the due job, the job submitted for it): (None, None) when the period already has a job -- found by its
    key, or taken by a concurrent run between our look-up and our submit -- and (due, None) with ``submit`` None
    (a dry run).

    ``submit(due)`` must record the job with ``schedule_period=due.period[0].isoformat()`` (``submit_job`` does),
    so the job row and its period row commit together or not at all.
    """
    first, _ = last_complete_period(section.every, now)
    if store.period_job(section.task, first.isoformat()) is not None:
        return None, None
    job = due(section, store.by_requester(section.task, SCHEDULER), now, output_dir)
    if job is None or submit is None:
        return job, None
    try:
        return job, submit(job)
    except PeriodTaken:
        return None, None

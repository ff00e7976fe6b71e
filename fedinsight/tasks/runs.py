"""A finished run's folder (a simulation's ``--out``, a deployed job's output): its task and its report.

Every run writes ``summary.json`` with the task's name; the report takes that task's sections from the
registry (:meth:`~fedinsight.federation.task.Task.report_sections`), so no file sniffing decides what a
run was.
"""

from __future__ import annotations

from pathlib import Path

from fedinsight.federation import registry
from fedinsight.federation.task import Task
from fedinsight.report import load_run, render_report, write_report
from fedinsight.tasks import TASKS

assert TASKS  # every task is registered


def task_of_run(run_dir: Path) -> Task:
    summary, _ = load_run(run_dir)
    return registry.get(str(summary.get("task", "")))


def render_run_report(run_dir: Path, *, ledger_url: str | None = None, title: str | None = None,
                      partner_budgets: bool = True) -> str:
    return render_report(run_dir, task_of_run(run_dir).report_sections, ledger_url=ledger_url, title=title,
                         partner_budgets=partner_budgets)


def write_run_report(run_dir: Path, *, ledger_url: str | None = None) -> Path:
    return write_report(run_dir, task_of_run(run_dir).report_sections, ledger_url=ledger_url)

"""``fedinsight report RUN``: (re)write a run folder's HTML report."""

from __future__ import annotations

from pathlib import Path

import typer

from fedinsight.cli.common import (
    emit,
    kv_table,
)


def report_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder (the --out of a simulate, demo or job run)."),
    db: str | None = typer.Option(None, "--db", help="Ledger URL, if not the one the run names or RUN/ledger.db."),
    as_json: bool = typer.Option(False, "--json", help="Print the report's path and contents as JSON."),
) -> None:
    """Write RUN/report.html: one self-contained page with charts of the run (no network needed to view it).

    Learning curves against the baselines, ROC / calibration / gain (propensity), ranking metrics and the
    exploration trade-off (recommendation), every insight with its intervals and suppressions, each partner's
    ε against its budget from the ledger, and the configuration with the command that reproduces the run.
    simulate, demo and job run write it automatically; use this to re-render or to point at another ledger.

    Example: fedinsight report runs/demo   (then open runs/demo/report.html in a browser)
    """
    from fedinsight.report import load_run, task_of
    from fedinsight.tasks.runs import write_run_report

    summary, insights = load_run(run_dir)
    path = write_run_report(run_dir, ledger_url=db)
    html = path.read_text(encoding="utf-8")
    info = {"report": str(path.resolve()), "task": task_of(summary, insights), "bytes": len(html.encode()),
            "charts": html.count('<figure class="chart"'), "sections": html.count("<section ")}
    emit(info, kv_table("report", info), as_json)

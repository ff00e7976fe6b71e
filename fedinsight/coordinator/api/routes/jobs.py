"""``/jobs/{id}``: a job's status and its HTML report, for the job's requester, admins and auditors."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from fedinsight.coordinator.api.deps import principal, shared
from fedinsight.coordinator.api.schemas import JobOut, Problem, errors, job_out
from fedinsight.coordinator.auth import Permission, Principal
from fedinsight.coordinator.jobs import job_output_dir

REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
"""The report page loads nothing and runs no script; the header makes the browser enforce that."""

PROBLEM_SCHEMA = {"$ref": "#/components/schemas/" + Problem.__name__}

router = APIRouter(tags=["queries"])


@router.get("/jobs/{job_id}", response_model=JobOut, responses=errors(403, 404))
def job_status(job_id: str, request: Request, who: Principal = Depends(principal)) -> JobOut:
    """A job's status: its requester may read it, admins and auditors any job."""
    request.state.target = job_id
    job = shared(request).state.jobs.get(job_id)
    if not (who.can(Permission.READ_JOBS) or job.requester == f"token:{who.token_id}"):
        raise HTTPException(403, "you may only read your own jobs")
    return job_out(job)


@router.get("/jobs/{job_id}/report", response_class=HTMLResponse, responses={
    200: {"content": {"text/html": {"schema": {"type": "string"}}},
          "description": "The job's self-contained report page"},
    # the errors are JSON even though the page is HTML: declared by hand ("model" would file them under text/html)
    **{code: {"description": spec["description"], "content": {"application/json": {"schema": PROBLEM_SCHEMA}}}
       for code, spec in errors(403, 404).items()}})
def job_report(job_id: str, request: Request, who: Principal = Depends(principal)) -> HTMLResponse:
    """The job's HTML run report (the page ``fedinsight report`` writes), for the job's requester, admins and
    auditors. Per-partner budgets appear only for roles that may read every budget."""
    from fedinsight.tasks.runs import render_run_report  # loads matplotlib: only when a report is asked for

    state = shared(request).state
    request.state.target = job_id
    job = state.jobs.get(job_id)
    if not (who.can(Permission.READ_JOBS) or job.requester == f"token:{who.token_id}"):
        raise HTTPException(403, "you may only read your own jobs")
    folder = job_output_dir(state.state_dir, job.id)
    if job.status != "completed" or not folder.is_dir():
        raise HTTPException(404, f"job {job.id} has no results to report (status: {job.status})")
    full = who.can(Permission.READ_ALL_BUDGETS)
    html = render_run_report(folder, ledger_url=state.db_url, partner_budgets=full,
                             title=f"fedinsight {job.task} report")
    return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP, "Cache-Control": "no-store"})

"""Deployment: ``certs``, ``coordinator``, ``job``, ``tokens`` and ``audit`` command groups."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fedinsight.cli.common import (
    emit,
    err,
    kv_table,
    progress_bar,
    show,
)
from fedinsight.core.errors import ConfigError, FedinsightError
from fedinsight.core.logs import plain, worth_showing

certs_app = typer.Typer(help="Create the CA, the coordinator's TLS certificate and partner key pairs.",
                        no_args_is_help=True)
coordinator_app = typer.Typer(help="Run the coordinator: SuperLink (TLS, partner auth) + insights API.",
                              no_args_is_help=True)
job_app = typer.Typer(help="Submit and follow jobs on a running coordinator.", no_args_is_help=True)
tokens_app = typer.Typer(help="Create, list and revoke insights-API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="Read and verify the hash-chained audit log.", no_args_is_help=True)


_COORD_CONFIG = typer.Option(..., "--config", "-c", envvar="FEDINSIGHT_COORDINATOR_CONFIG",
                             help="The coordinator's coordinator.toml.")


@certs_app.command("init")
def certs_init(
    out_dir: Path = typer.Option(..., "--out", help="Folder for the CA, coordinator certificate and partner keys."),
    hosts: list[str] = typer.Option(["localhost", "127.0.0.1"], "--host",
                                    help="Host names / IPs partners and analysts use to reach the coordinator."),
    partners: list[str] = typer.Option([], "--partner", help="A partner id (repeat for each partner)."),
    days: int = typer.Option(825, help="Validity of the coordinator certificate in days."),
    overwrite: bool = typer.Option(False, help="Replace existing files (old keys stop working)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create a CA, the coordinator's TLS certificate (with SANs) and key, and one ECDSA key pair per partner.

    Private keys are written with mode 0600. Send each partner ca.crt and its own partners/<id>.key;
    keep ca.key offline.

    Example: fedinsight certs init --out certs --host coord.example.com --host 10.0.0.5 --partner retail --partner bank
    """
    from fedinsight.federation.certs import init_certs

    bundle = init_certs(out_dir, hosts=list(hosts), partners=list(partners), days=days, overwrite=overwrite)
    rows: dict[str, object] = {"CA certificate": bundle.ca_cert, "CA key (keep offline)": bundle.ca_key,
                               "coordinator certificate": bundle.server_cert, "coordinator key": bundle.server_key,
                               "hosts (SANs)": ", ".join(hosts)}
    rows.update({f"partner {p}": f"{k} (private), {pub} (public)" for p, (k, pub) in bundle.partner_keys.items()})
    show(as_json, bundle.as_dict(), kv_table(f"key material in {out_dir}", rows))


@certs_app.command("partner-key")
def certs_partner_key(
    partner: str = typer.Argument(..., help="The partner id."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for <id>.key (0600) and <id>.pub."),
    overwrite: bool = typer.Option(False, help="Replace an existing key pair (key rotation)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create one partner authentication key pair (run it on the partner's machine; send only the .pub).

    Example: fedinsight certs partner-key retail --out /srv/fedinsight/keys
    """
    from fedinsight.federation.certs import write_partner_keypair

    private, public = write_partner_keypair(out_dir, partner, overwrite=overwrite)
    show(as_json, {"private_key": str(private), "public_key": str(public)},
          kv_table(f"partner {partner}", {"private key (stays here)": private, "public key (send it)": public}))


@coordinator_app.command("start")
def coordinator_start(config: Path = _COORD_CONFIG,
                      verbose: bool = typer.Option(False, "--verbose",
                                                   help="Quote Flower's DEBUG/INFO lines too if a child dies."),
                      init_state: bool = typer.Option(False, "--init-state", help="Start although the database "
                                                      "was lost (spent budgets are lost; the audit log says so)."),
                      ) -> None:
    """Start the SuperLink (TLS, SuperNode authentication, no runtime installs) and the insights API.

    Runs in the foreground until SIGTERM or Ctrl-C, then stops every child process. Writes a PID file in
    the state folder and refuses to start if the configuration is invalid.

    Example: fedinsight coordinator start --config coordinator.toml
    """
    from fedinsight.coordinator.process import run_coordinator

    code = run_coordinator(config, say=lambda m: err.print(m, highlight=False, markup=False), verbose=verbose,
                           init_state=init_state)
    if code:
        raise typer.Exit(code)


@coordinator_app.command("stop")
def coordinator_stop(config: Path = _COORD_CONFIG,
                     as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Stop the coordinator named by the PID file in its state folder (SIGTERM, then wait), and any SuperLink,
    API or Flower process a coordinator killed without stopping them left (named by their PID files).

    Example: fedinsight coordinator stop --config coordinator.toml
    """
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.core.children import ChildRecords
    from fedinsight.core.procs import stop_supervisor

    cfg = load_coordinator_config(config, check_files=False)
    pid, left = stop_supervisor(cfg.pid_file, "coordinator", ChildRecords(cfg.children_dir),
                                timeout=cfg.coordinator.stop_timeout * 3)
    result: dict[str, object] = {"process": "coordinator", "pid": pid,
                                 "state": "not running" if pid is None else "stopped"}
    if left:  # a coordinator killed with kill -9 left these (its children's PID files name them)
        result["leftovers"] = ", ".join(left)
    emit(result, kv_table("coordinator stop", result), as_json)


def _job_rows(job, spent: dict[str, float]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    rows: dict[str, object] = {"job": job.id, "task": job.task, "status": job.status,
                               "flower run": job.flwr_run_id or "-", "requester": job.requester,
                               "created": job.created_at, "finished": job.finished_at or "-"}
    rows.update({f"ε spent by {p}": f"{e:.4f}" for p, e in sorted(spent.items())})
    if job.error:
        rows["error"] = job.error
    return rows


@job_app.command("run")
def job_run(
    task: str = typer.Argument(..., help="A registered task (see `fedinsight simulate --help`)."),
    federation: str = typer.Option(..., "--federation", help="The federation name in coordinator.toml."),
    config: Path = _COORD_CONFIG,
    options: list[str] = typer.Option([], "--option", "-o", help="Run-config KEY=VALUE for the task (repeat)."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Stream progress until the job finishes."),
    timeout: float = typer.Option(3600.0, help="Seconds to follow before giving up (the job keeps running)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    verbose: bool = typer.Option(False, "--verbose", help="Stream Flower's DEBUG/INFO log lines of the run too."),
) -> None:
    """Submit a job (``flwr run``) to the running coordinator and stream its progress (its warnings and errors;
    every log line with ``--verbose``).

    Example: fedinsight job run secure_training --federation marketing --config coordinator.toml -o rounds=3
    """
    import re as _re

    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.jobs import follow_job, job_epsilon, job_output_dir, parse_options, submit_job
    from fedinsight.coordinator.state import CoordinatorState

    cfg = load_coordinator_config(config, check_files=False)
    state = CoordinatorState.from_config(cfg)
    opts = parse_options(list(options))
    from fedinsight.federation import registry
    from fedinsight.federation.job import JobSettings
    from fedinsight.federation.options import dashed, read_option_file

    # -o spec=insights.toml, -o rates=rates.toml: the job carries the file's text
    for name in (*registry.get(task).options.file_fields(), *JobSettings.file_fields()):
        if isinstance(opts.get(dashed(name)), str):
            opts[dashed(name)] = read_option_file(name, opts[dashed(name)])
    job = submit_job(cfg, state, task, federation=federation, options=opts, requester="operator")
    if follow:
        rounds = int(opts.get("rounds", opts.get("num-server-rounds", 3)))
        with progress_bar() as progress:
            bar = progress.add_task(f"{job.id} ({task}) rounds", total=rounds)

            def on_line(line: str) -> None:
                if m := _re.search(r"\[ROUND (\d+)\]", line):
                    progress.update(bar, completed=int(m.group(1)) - 1)
                if not as_json and worth_showing([line], verbose=verbose):
                    progress.console.print(plain(line), highlight=False, markup=False, soft_wrap=True)

            job = follow_job(cfg, state, job, on_line=on_line, timeout=timeout)
            if job.status == "completed":
                progress.update(bar, completed=rounds)
    spent = job_epsilon(state, job.id)
    result: dict[str, object] = {**job.as_dict(), "epsilon_by_partner": spent}
    output = job_output_dir(cfg.state_dir, job.id)
    if job.status == "completed" and output.is_dir():
        from fedinsight.report import REPORT_NAME
        from fedinsight.tasks.runs import write_run_report

        # the coordinator writes the report as the job completes; render here only if it could not
        written = output / REPORT_NAME
        if written.is_file():
            err.print(f"report: {written}")
            report: Path | None = written
        else:
            report = write_run_report(output, ledger_url=state.db_url)
        result["report"] = str(report) if report else None
    show(as_json, result, kv_table(f"job {job.id}", _job_rows(job, spent)))
    if job.status == "failed":
        raise typer.Exit(1)


@job_app.command("schedule")
def job_schedule(
    config: Path = _COORD_CONFIG,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say which job is due; submit nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Submit the recalibration job that is due by coordinator.toml's [recalibration] schedule, if any (run it daily
    from cron or a systemd timer; a period is never submitted twice).

    Example: fedinsight job schedule --config coordinator.toml
    """
    from datetime import UTC, datetime

    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.job_store import Job
    from fedinsight.coordinator.jobs import job_output_dir, submit_job
    from fedinsight.coordinator.schedule import SCHEDULER, DueJob, submit_due
    from fedinsight.coordinator.state import CoordinatorState

    cfg = load_coordinator_config(config, check_files=False)
    if cfg.recalibration is None:
        raise ConfigError(f"{config} has no [recalibration] section: add one, e.g. [recalibration] every = "
                          "\"quarter\" (see docs/propensity.md)")
    state = CoordinatorState.from_config(cfg)

    def submit(due: DueJob) -> Job:
        return submit_job(cfg, state, due.task, federation=cfg.coordinator.federation, options=due.options,
                          requester=SCHEDULER, schedule_period=due.period[0].isoformat())

    job, submitted = submit_due(cfg.recalibration, state.jobs, datetime.now(UTC),
                                lambda job_id: job_output_dir(cfg.state_dir, job_id), None if dry_run else submit)
    result: dict[str, object] = {"due": job is not None}
    if job is not None:
        result.update(task=job.task, period=[d.isoformat() for d in job.period], options=job.options,
                      warm_start_from=str(job.warm_from) if job.warm_from else None)
        if submitted is not None:
            result["job"] = submitted.id
    show(as_json, result, kv_table("recalibration schedule", {k: str(v) for k, v in result.items()}))


@job_app.command("list")
def job_list(config: Path = _COORD_CONFIG, limit: int = typer.Option(20, help="How many, newest first."),
             as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """List jobs with their status (unfinished ones are checked against the SuperLink first).

    Example: fedinsight job list --config coordinator.toml
    """
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.jobs import reconcile
    from fedinsight.coordinator.state import CoordinatorState

    cfg = load_coordinator_config(config, check_files=False)
    state = CoordinatorState.from_config(cfg)
    state.jobs  # noqa: B018 - an unreadable database is the error to report, not an unreachable SuperLink
    try:
        reconcile(cfg, state)
    except FedinsightError as exc:
        err.print(f"warning: could not reach the SuperLink to refresh statuses ({exc})", markup=False)
    jobs = state.jobs.list(limit=limit)
    table = Table(title=f"jobs ({cfg.coordinator.federation})")
    for col in ("job", "task", "status", "requester", "created", "finished"):
        table.add_column(col)
    for j in jobs:
        table.add_row(j.id, j.task, j.status, j.requester, str(j.created_at)[:19], str(j.finished_at or "-")[:19])
    show(as_json, [j.as_dict() for j in jobs], table)


@job_app.command("status")
def job_status(job_id: str = typer.Argument(..., help="A job id from `job list`."), config: Path = _COORD_CONFIG,
               as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Show one job: status, Flower run, ε it spent per partner, error if any.

    Example: fedinsight job status job-3f2a9c1b7d0e --config coordinator.toml
    """
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.jobs import job_epsilon, reconcile
    from fedinsight.coordinator.state import CoordinatorState

    cfg = load_coordinator_config(config, check_files=False)
    state = CoordinatorState.from_config(cfg)
    job = state.jobs.get(job_id)
    if not job.finished:
        try:
            reconcile(cfg, state)
        except FedinsightError as exc:
            err.print(f"warning: could not reach the SuperLink ({exc})", markup=False)
        job = state.jobs.get(job_id)
    spent = job_epsilon(state, job.id)
    show(as_json, {**job.as_dict(), "epsilon_by_partner": spent}, kv_table(f"job {job.id}", _job_rows(job, spent)))


@tokens_app.command("create")
def tokens_create(
    name: str = typer.Argument(..., help="Who or what uses the token."),
    role: str = typer.Option(..., "--role", help="analyst, auditor or admin."),
    partner: str | None = typer.Option(None, "--partner", help="Bind an analyst token to one partner's budget view."),
    config: Path = _COORD_CONFIG,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create an API token; the secret is printed once and stored only as an HMAC.

    Example: fedinsight tokens create alice --role analyst --config coordinator.toml
    """
    from fedinsight.coordinator.state import CoordinatorState

    state = CoordinatorState.resolve(config)
    token, info = state.tokens.create(name, role, partner_id=partner)
    state.audit.append(actor="operator", role="operator", action="token.create", target=info.id,
                       detail={"name": name, "role": role, "partner": partner})
    show(as_json, {"token": token, **info.as_dict()},
          kv_table("new API token (shown once)", {"token": token, "id": info.id, "name": name, "role": role}))


@tokens_app.command("revoke")
def tokens_revoke(token_id: str = typer.Argument(..., help="The token id (from `tokens list`)."),
                  config: Path = _COORD_CONFIG,
                  as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Revoke a token; it stops working on its next request.

    Example: fedinsight tokens revoke 3f2a9c1b7d0e4a55 --config coordinator.toml
    """
    from fedinsight.coordinator.state import CoordinatorState

    state = CoordinatorState.resolve(config)
    info = state.tokens.revoke(token_id)
    state.audit.append(actor="operator", role="operator", action="token.revoke", target=token_id)
    show(as_json, info.as_dict(), kv_table(f"token {token_id}", {"name": info.name, "revoked": info.revoked_at}))


@tokens_app.command("list")
def tokens_list(config: Path = _COORD_CONFIG,
                as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """List tokens (ids, names, roles, revocation) — never their secrets.

    Example: fedinsight tokens list --config coordinator.toml
    """
    from fedinsight.coordinator.state import CoordinatorState

    infos = CoordinatorState.resolve(config).tokens.list_tokens()
    table = Table(title="API tokens")
    for col in ("id", "name", "role", "partner", "created", "revoked"):
        table.add_column(col)
    for t in infos:
        table.add_row(t.id, t.name, t.role, t.partner_id or "-", str(t.created_at)[:19], str(t.revoked_at or "-")[:19])
    show(as_json, [t.as_dict() for t in infos], table)


mfa_app = typer.Typer(help="Second factor (TOTP) for API tokens: required for admins and auditors.",
                      no_args_is_help=True)
tokens_app.add_typer(mfa_app, name="mfa")


@mfa_app.command("enrol")
def tokens_mfa_enrol(token_id: str = typer.Argument(..., help="The token id (from `tokens list`)."),
                     config: Path = _COORD_CONFIG,
                     as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Give a token a TOTP second factor: prints its secret, an otpauth:// URI for the authenticator app and ten
    single-use recovery codes, once. Enrolling again replaces them and ends the token's open sessions.

    Example: fedinsight tokens mfa enrol 3f2a9c1b7d0e4a55 --config coordinator.toml
    """
    from fedinsight.coordinator.state import CoordinatorState
    from fedinsight.core.errors import ConfigError

    state = CoordinatorState.resolve(config)
    info = state.tokens.info(token_id)
    if info.revoked_at is not None:
        raise ConfigError(f"token {token_id} is revoked; create a new one with `fedinsight tokens create`")
    enrolment = state.mfa.enrol(token_id, account=f"{info.name} ({info.role})")
    state.audit.append(actor="operator", role="operator", action="token.mfa.enrol", target=token_id)
    show(as_json, enrolment.as_dict(), kv_table(
        f"second factor for token {token_id} (shown once)",
        {"secret (type into the app)": enrolment.secret, "otpauth URI (or paste this)": enrolment.uri,
         "recovery codes (each works once)": " ".join(enrolment.recovery_codes),
         "next": "POST /session with the API token and the header X-TOTP: <code>; use the session token returned"}))


@tokens_app.command("unlock")
def tokens_unlock(token_id: str = typer.Argument(..., help="The token id (from `audit alerts`)."),
                  config: Path = _COORD_CONFIG,
                  as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Lift the lock the access monitor put on a token (look at `fedinsight audit alerts` first).

    Example: fedinsight tokens unlock 3f2a9c1b7d0e4a55 --config coordinator.toml
    """
    from fedinsight.coordinator.state import CoordinatorState
    from fedinsight.core.errors import NotFoundError

    state = CoordinatorState.resolve(config)
    state.tokens.info(token_id)  # a clear error for an unknown id
    if not state.access.unlock(token_id):
        raise NotFoundError(f"token {token_id} is not locked")
    state.audit.append(actor="operator", role="operator", action="token.unlock", target=token_id)
    show(as_json, {"token_id": token_id, "unlocked": True}, kv_table(f"token {token_id}", {"unlocked": True}))


@audit_app.command("alerts")
def audit_alerts(config: Path = _COORD_CONFIG, limit: int = typer.Option(50, min=1, max=10_000,
                                                                           help="At most this many."),
                 as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Unusual access by API tokens, newest first: bulk reading, or repeated and near-identical queries that
    could difference a small group out of noisy answers. Each is also in the audit log (`anomaly.alert`).

    Example: fedinsight audit alerts --config coordinator.toml
    """
    from fedinsight.coordinator.state import CoordinatorState

    alerts = CoordinatorState.resolve(config).access.alerts(limit)
    table = Table(title="access alerts")
    for col in ("when", "token", "what", "locked"):
        table.add_column(col)
    for a in alerts:
        table.add_row(str(a.at)[:19], a.token_id, a.words, "yes" if a.locked else "no")
    show(as_json, [a.as_dict() for a in alerts], table)


@audit_app.command("verify")
def audit_verify(config: Path = _COORD_CONFIG,
                 as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Re-check the whole hash chain; exit 6 if any entry was edited or deleted.

    Example: fedinsight audit verify --config coordinator.toml
    """
    from fedinsight.coordinator.state import CoordinatorState
    from fedinsight.core.errors import AuditVerificationError

    result = CoordinatorState.resolve(config).audit.verify()
    payload = {"ok": result.ok, "entries": result.entries, "head_hash": result.head_hash, "problems": result.problems}
    show(as_json, payload, kv_table("audit log", {"verified": result.ok, "entries": result.entries,
                                                    "head hash (record it elsewhere)": result.head_hash}))
    if not result.ok:
        raise AuditVerificationError(f"{len(result.problems)} problem(s): " + "; ".join(result.problems))


@audit_app.command("show")
def auditshow(config: Path = _COORD_CONFIG, since: int = typer.Option(0, help="Entries after this sequence number."),
               limit: int = typer.Option(50, help="At most this many."),
               as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Print audit entries: who, what, when, outcome, ε.

    Example: fedinsight audit show --config coordinator.toml --since 100
    """
    from fedinsight.coordinator.state import CoordinatorState

    entries = CoordinatorState.resolve(config).audit.entries(since_seq=since, limit=limit)
    table = Table(title="audit log")
    for col in ("seq", "at", "actor", "action", "target", "outcome", "ε"):
        table.add_column(col)
    for e in entries:
        table.add_row(str(e.seq), str(e.at)[:19], e.actor, e.action, e.target[:40], e.outcome,
                      "" if e.epsilon is None else f"{e.epsilon:.4f}")
    show(as_json, [e.as_dict() for e in entries], table)

"""Jobs on a running coordinator: submit the Flower app with ``flwr run``, follow it, keep the record.

A job is one Flower run of ``fedinsight.coordinator.serverapp:app`` with a task (``secagg``, ``propensity``,
``insights``, ``recommend``). Each job gets a tiny app folder under the coordinator's state folder with
a ``pyproject.toml`` whose ``[tool.flwr.app.config]`` *is* the job's run config, and **no code**: the
ServerApp and every partner's ClientApp run the fedinsight each machine installed itself, so the
coordinator cannot push code to partners (and runtime dependency installation is off everywhere).

``FLWR_HOME`` is always a folder under the coordinator's state folder: nothing lands in ``~/.flwr``.

The job record lives in the database (table ``coordinator_jobs``): the ServerApp marks it running,
completed or failed (:func:`job_lifecycle`, called from ``fedinsight.coordinator.serverapp``), and appends the
outcome with the ε the job spent to the audit log. When the coordinator restarts, jobs still marked
running are marked failed — their Flower run died with the old SuperLink — never silently dropped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fedinsight.tasks  # noqa: F401  (registers every task)
from fedinsight.coordinator.job_store import Job
from fedinsight.coordinator.state import CoordinatorState
from fedinsight.core.errors import ConfigError, DeploymentError
from fedinsight.core.redact import redact_secrets
from fedinsight.core.settings import dump_toml
from fedinsight.core.version import __version__
from fedinsight.federation import registry
from fedinsight.federation.job import RESERVED, SIMULATION_ONLY
from fedinsight.federation.options import dashed
from fedinsight.federation.task import settings_of
from fedinsight.privacy.ledger import compose_epsilon

# dp_accounting's RDP search logs a warning per unconverged order while composing: noise on a CLI.
logging.getLogger("absl").setLevel(logging.ERROR)
log = logging.getLogger(__name__)

SUPEREXEC_POLL_ENV, SUPEREXEC_POLL_SECONDS = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.25"
"""Flower's SuperExec polls for new app tasks every 1 s by default; each SecAgg+ stage waits on it."""


def job_epsilon(state: Any, job_id: str) -> dict[str, float]:
    """ε each partner was charged by this job alone (its events composed at the partner's δ)."""
    by_partner: dict[str, list[Any]] = {}
    for charge in state.ledger.charges():
        if charge.job_id == job_id:
            by_partner.setdefault(charge.partner_id, []).append(charge.event)
    out = {}
    for pid, events in by_partner.items():
        delta = state.ledger.status(pid).delta
        out[pid] = compose_epsilon(events, delta, state.ledger.accountant)
    return out


def finish_job(state: Any, job: Job, status: str, *, error: str = "", actor: str = "system") -> Job:
    """Record a job's outcome and append it, with the ε it spent, to the audit log (once)."""
    before = state.jobs.get(job.id)
    after = state.jobs.mark(job.id, status, error=error)
    if before.finished:
        return after
    spent = job_epsilon(state, job.id)
    state.audit.append(actor=actor, role="system", action="job.finish", target=job.id, outcome=after.status,
                       epsilon=max(spent.values()) if spent else 0.0,
                       detail={"task": job.task, "requester": job.requester, "epsilon_by_partner": spent,
                               "error": error[:500]})
    return after


@contextmanager
def job_lifecycle(run_config: dict[str, Any]) -> Iterator[None]:
    """Around a ServerApp task: mark the job running, then completed or failed (with the audit entry).

    A no-op outside a coordinator (simulations have no job record).
    """
    state = CoordinatorState.from_env()
    job_id = run_config.get("job-id")
    if state is None or job_id is None:
        yield
        return
    job = state.jobs.mark(str(job_id), "running")
    try:
        yield
    except BaseException as exc:
        finish_job(state, job, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    try:
        if run_config.get("out-dir"):  # before "completed", so whoever sees the job completed finds its report
            write_job_report(state, job, Path(str(run_config["out-dir"])))
    finally:  # whatever happens to the report, the job's own work is done
        finish_job(state, job, "completed")


def job_command(job: Job) -> str:
    """The ``fedinsight job run`` command that submits ``job`` again (the report's "reproduce" box).

    Built from what the submitter asked for; the coordinator's own keys (job id, output folder, ...) are
    set anew by every submission, so they are not part of it.
    """
    parts = ["fedinsight", "job", "run", job.task, "--federation", job.federation, "--config", "coordinator.toml"]
    for key, value in job.run_config.items():
        if key in ("task", "partners"):
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        parts += ["-o", f"{key}={text}"]
    return shlex.join(parts)


def write_job_report(state: Any, job: Job, out_dir: Path) -> Path | None:
    """Write ``out_dir/report.html`` for a completed job, on the coordinator, whoever submitted it.

    Why here: a job submitted with ``--no-follow`` or through the API has no client waiting to render
    it. The job has already completed: a report that cannot be written is logged, never a failed job.
    A task that wrote no results (``preflight`` reports to its caller only) gets no report and no folder.
    """
    if not out_dir.is_dir():
        return None
    try:
        # heavy: both load matplotlib, which the coordinator needs only when a job completes
        from fedinsight.report import record_command
        from fedinsight.tasks.runs import write_run_report

        record_command(out_dir, job_command(job))
        return write_run_report(out_dir, ledger_url=state.db_url)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("job %s: no report written (%s: %s); retry with `fedinsight report %s --db DATABASE_URL`",
                    job.id, type(exc).__name__, redact_secrets(str(exc)), out_dir)
        return None


# --- talking to the SuperLink with Flower's CLI ---------------------------------------------------

def flwr_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower's commands: our FLWR_HOME, this interpreter's scripts first on PATH, offline."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env.update({"FLWR_HOME": str(flwr_home), "PATH": bindir + os.pathsep + env.get("PATH", ""),
                "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "NO_COLOR": "1", "TERM": "dumb"})
    env.setdefault(SUPEREXEC_POLL_ENV, SUPEREXEC_POLL_SECONDS)
    return env


def flwr_bin(name: str = "flwr") -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def write_flwr_connection(flwr_home: Path, name: str, address: str, ca_cert: Path) -> Path:
    """Flower CLI's ``config.toml`` with one SuperLink connection (TLS, our CA), made the default."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    path = flwr_home / "config.toml"
    path.write_text(dump_toml({"superlink": {"default": name}}) + "\n"
                    + dump_toml({f"superlink.{name}": {"address": address, "root-certificates": str(ca_cert)}}),
                    encoding="utf-8")
    return path


def _json_tail(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        raise DeploymentError(f"unexpected output from flwr: {text.strip()[:500]}")
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError:
        raise DeploymentError(f"unexpected output from flwr: {text.strip()[:500]}") from None


def flwr_json(args: list[str], flwr_home: Path, *, timeout: float = 120.0) -> dict[str, Any]:
    """Run ``flwr ARGS --format json``; the parsed payload, or DeploymentError with Flower's message."""
    try:
        proc = subprocess.run([flwr_bin(), *args, "--format", "json"], env=flwr_env(flwr_home), capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DeploymentError(f"`flwr {' '.join(args)}` did not answer within {timeout:.0f}s") from None
    payload = _json_tail(proc.stdout)
    if not payload.get("success", False):
        message = re.sub(r"\s+", " ", str(payload.get("error-message", proc.stderr))).strip()
        raise DeploymentError(f"`flwr {args[0]}` failed: {message}")
    return payload


def register_partner_key(flwr_home: Path, connection: str, public_key: Path) -> tuple[str, int | None]:
    """Register a SuperNode public key: ('registered', the node id Flower bound to the key), or
    ('already registered', None) when the SuperLink knew the key (restarts are idempotent)."""
    try:
        payload = flwr_json(["supernode", "register", str(public_key), connection], flwr_home)
    except DeploymentError as exc:
        if "already in use" in str(exc):
            return "already registered", None
        raise
    node = payload.get("node-id")
    return "registered", None if node is None else int(node)


def run_statuses(flwr_home: Path, connection: str) -> dict[str, str]:
    """Flower run id -> SuperLink status (``pending``, ``running``, ``finished:completed`` ...)."""
    payload = flwr_json(["list", connection], flwr_home)
    return {str(r["run-id"]): str(r["status"]) for r in payload.get("runs", [])}


# --- submitting and following jobs ----------------------------------------------------------------

def available_tasks() -> list[str]:
    """Every registered task (the same registry the ServerApp and the partners' ClientApp serve)."""
    return registry.names()


def _toml_scalar(key: str, value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    raise ConfigError(f"run config value {key}={value!r} must be a str, int, float or bool")


def write_job_app(folder: Path, run_config: dict[str, Any]) -> Path:
    """The code-less Flower app folder for one job (its config is the job's run config)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = dump_toml({
        "build-system": {"requires": ["setuptools>=68"], "build-backend": "setuptools.build_meta"},
        "project": {"name": "fedinsight-job", "version": __version__,
                    "description": "A fedinsight job: runs the fedinsight installed on each machine",
                    "license": "Apache-2.0"},
        "tool.flwr.app": {"publisher": "fedinsight"},
        "tool.flwr.app.components": {"serverapp": "fedinsight.coordinator.serverapp:app",
                                     "clientapp": "fedinsight.partner.clientapp:app"},
        "tool.flwr.app.config": {k: _toml_scalar(k, v) for k, v in run_config.items()},
    })
    (folder / "pyproject.toml").write_text(header, encoding="utf-8")
    return folder


def parse_options(options: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (values parsed as TOML scalars: ``3``, ``0.5``, ``true``, ``"text"``)."""
    out: dict[str, Any] = {}
    for item in options:
        key, sep, raw = item.partition("=")
        if not sep or not re.match(r"^[A-Za-z0-9_-]+$", key):
            raise ConfigError(f"--option '{item}' must be KEY=VALUE")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        # Flower run configs hold only str/int/float/bool: a TOML date or array stays the text it was.
        out[key] = value if isinstance(value, bool | int | float | str) else raw
    return out


def job_output_dir(state_dir: Path, job_id: str) -> Path:
    """Where a deployed job's ServerApp writes its results (summary.json, model, report.html).

    Chosen by the coordinator, never by the submitter (``out-dir`` is reserved), so a job cannot be aimed
    at an arbitrary path on the coordinator's machine.
    """
    return Path(state_dir) / "jobs" / job_id / "output"


def submit_job(config: Any, state: Any, task: str, *, federation: str, options: dict[str, Any] | None = None,
               requester: str = "operator", schedule_period: str | None = None) -> Job:
    """Record and start a job on the coordinator's SuperLink; returns the job with its Flower run id.

    ``schedule_period``: the scheduled period (ISO first day) the job takes, in the same transaction as its record
    (raises :class:`~fedinsight.coordinator.job_store.PeriodTaken` when another run took it first: nothing started).

    Refuses a task this installation does not have and a federation the coordinator does not serve.
    """
    if federation != config.coordinator.federation:
        raise ConfigError(f"this coordinator serves federation '{config.coordinator.federation}', not '{federation}'")
    spec = registry.get(task)  # an unknown task is refused, naming the known ones
    task = spec.name  # an old name (a stored job row, an old script) resolves to today's
    reserved = sorted((set(RESERVED) | set(SIMULATION_ONLY)) & set(options or {}))
    if reserved:
        raise ConfigError(f"--option cannot set {', '.join(reserved)} on a deployment")
    run_config: dict[str, Any] = {"task": task, "partners": len(config.partners), **(options or {})}
    if "preset" in spec.options.run_config_keys() and "preset" not in run_config:  # the catalogue vocabulary
        run_config["preset"] = config.coordinator.catalogue_preset
    job_settings, checked = settings_of(spec, run_config)  # options are validated before anything is recorded
    for name in spec.options.file_fields():  # a file's text (e.g. a TOML spec) travels in its canonical form
        if dashed(name) in run_config:
            run_config[dashed(name)] = getattr(checked, name)
    run_config.update(job_settings.message_config())  # the rate table, canonical (CNY=0.138,EUR=1.08)
    submitted = dict(run_config)  # what the submitter asked for: the job record and its reproduce command
    job = state.jobs.create(task=task, federation=federation, run_config=submitted, requester=requester,
                            schedule_period=schedule_period)
    run_config.update({"job-id": job.id, "requester": requester, "publish": True,
                       "out-dir": str(job_output_dir(config.state_dir, job.id).resolve())})
    state.audit.append(actor=requester, role="operator" if requester == "operator" else "", action="job.submit",
                       target=job.id, outcome="submitted", detail={"task": task, "run_config": run_config})
    app_dir = write_job_app(config.state_dir / "jobs" / job.id, run_config)
    try:
        payload = flwr_json(["run", str(app_dir), federation], config.flwr_home)
    except DeploymentError as exc:
        finish_job(state, job, "failed", error=str(exc), actor=requester)
        raise
    state.jobs.set_run_id(job.id, str(payload["run-id"]))
    return state.jobs.get(job.id)


def reconcile(config: Any, state: Any) -> list[Job]:
    """Mark unfinished jobs whose Flower run ended (or vanished) without the ServerApp recording it."""
    pending = [j for j in state.jobs.unfinished() if j.flwr_run_id]
    if not pending:
        return []
    statuses = run_statuses(config.flwr_home, config.coordinator.federation)
    changed = []
    for job in pending:
        status = statuses.get(str(job.flwr_run_id))
        if status is None:
            changed.append(finish_job(state, job, "failed", error="the Flower run no longer exists on the SuperLink"))
        elif status.startswith("finished"):
            outcome = "completed" if status == "finished:completed" else "failed"
            changed.append(finish_job(state, job, outcome, error="" if outcome == "completed" else status))
    return changed


def follow_job(config: Any, state: Any, job: Job, *, on_line: Callable[[str], None] | None = None,
               timeout: float = 3600.0, poll: float = 0.5) -> Job:
    """Stream the run's log lines to ``on_line`` until the job finishes; return the final job."""
    proc = None
    if on_line is not None and job.flwr_run_id:
        proc = subprocess.Popen([flwr_bin(), "log", str(job.flwr_run_id), config.coordinator.federation, "--stream"],
                                env=flwr_env(config.flwr_home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        os.set_blocking(proc.stdout.fileno(), False)  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 10.0
    try:
        while True:
            if proc is not None and on_line is not None:
                for line in iter(proc.stdout.readline, ""):  # type: ignore[union-attr]
                    on_line(line.rstrip("\n"))
            current = state.jobs.get(job.id)
            if current.finished:
                return current
            if time.monotonic() > next_check:
                reconcile(config, state)
                next_check = time.monotonic() + 10.0
            if time.monotonic() > deadline:
                raise DeploymentError(f"job {job.id} did not finish within {timeout:.0f}s (it keeps running; "
                                      f"see `fedinsight job status {job.id}`)")
            time.sleep(poll)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

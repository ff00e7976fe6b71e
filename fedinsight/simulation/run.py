"""Simulate any registered task on this machine: the CLI's ``simulate`` commands and the Python API.

One driver for every task, in this order: resolve the dataset into partner folders (built-ins are
written once into the run folder; a user's own folder is used in place, any folder names), let the task
fill the options its dataset decides (a built-in's label window, a preset's reference date, the
catalogue), compute its baselines on the partners' *protected* views (consent- and erasure-filtered,
identifiers tokenized), run the job on Flower's simulation runtime with the coordinator's ServerApp and
the partners' ClientApp, merge, and write ``summary.json``, ``run.json`` and ``report.html``. A run whose
result fails the task's own check (a preflight with a refusing partner) writes none of them, only
``FAILED.json`` saying why: a report of a failed run would read like a finished one.

The run folder keeps the simulation's ledgers (the coordinator's ``ledger.db`` and the simulated partners'
own ``partner-ledgers.db``), so a second run into the same folder spends from the same budgets;
``--overwrite`` starts from an empty folder.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fedinsight.core.errors import ConfigError, FedinsightError
from fedinsight.core.files import atomic_output_file
from fedinsight.core.redact import redact_secrets, redact_tree
from fedinsight.data.currency import NOT_DECLARED, RateTable, partner_currencies
from fedinsight.data.federation import BUILTIN_DATASETS
from fedinsight.federation import registry
from fedinsight.federation.job import JobSettings
from fedinsight.federation.options import merge_run_config
from fedinsight.federation.outcome import FAILED, write_failed
from fedinsight.federation.simulation import check_ray_address, run_simulation
from fedinsight.federation.task import Simulated, Task, json_finite, result_of
from fedinsight.federation.timing import handler_seconds
from fedinsight.simulation.options import SimulationOptions
from fedinsight.simulation.partners import BUILTIN_FOLDER, Partners, folder_federation, resolve
from fedinsight.simulation.results import PartnerModel, model_of, read_insights

LEDGER = "ledger.db"
PARTNER_LEDGERS = "partner-ledgers.db"
RESULT_FILES = ("summary.json", "report.html", "run.json", "insights.json")


@dataclass
class Run:
    """A finished simulation: its summary, where its files are, and the partners it ran on.

    ``run.model`` is the trained model, used on a partner's side (``run.model.score("shop-us")`` for propensity,
    ``run.model.recommend("shop-us", k=10)`` for recommend); ``run.insights`` the released insights as a table
    (:mod:`fedinsight.simulation.results`). ``Run.open(folder)`` reads a finished run folder back.
    """

    task: str
    out_dir: Path
    summary: dict[str, Any]
    partners: Partners | None = None

    @classmethod
    def open(cls, out_dir: str | Path) -> Run:
        """A finished run folder (``--out`` of ``fedinsight simulate``, or ``run.out_dir``)."""
        out = Path(out_dir)
        if not (out / "summary.json").is_file() and (out / FAILED).is_file():
            failed = json.loads((out / FAILED).read_text())
            raise ConfigError(f"{out} holds a failed {failed.get('task', '')} run: {failed.get('message', '')}")
        if not (out / "summary.json").is_file():
            raise ConfigError(f"{out} holds no summary.json: not a finished simulation's folder")
        summary = json.loads((out / "summary.json").read_text())
        dataset = str(summary.get("dataset") or "")
        partners = None
        if dataset in BUILTIN_DATASETS and (out / BUILTIN_FOLDER).is_dir():
            partners = Partners((out / BUILTIN_FOLDER).resolve(), dataset, True)
        elif dataset and dataset not in BUILTIN_DATASETS and Path(dataset).is_dir():
            partners = Partners.from_folder(dataset)
        return cls(str(summary.get("task", "")), out, summary, partners)

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.summary.get("metrics", {}))

    @property
    def model(self) -> PartnerModel:
        """The model this run trained (propensity, recommend); a ConfigError for tasks that train none."""
        return model_of(self.task, self.out_dir, self.partners)

    @property
    def insights(self) -> pd.DataFrame:
        """The released insights of an insights run, one row per number, with 95 % intervals."""
        return read_insights(self.out_dir)

    @property
    def privacy(self) -> dict[str, Any]:
        return dict(self.summary.get("privacy", {}))

    @property
    def report_path(self) -> Path | None:
        path = self.out_dir / "report.html"
        return path if path.is_file() else None


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """``out`` ready for a run: emptied with ``overwrite`` (only if it looks like a run folder), else reused."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if overwrite and out.exists() and any(out.iterdir()):
        ours = any((out / n).exists() for n in (*RESULT_FILES, FAILED, LEDGER, "partners", "model.pt", "model"))
        if not ours:
            raise ConfigError(f"refusing to --overwrite {out}: it does not look like a simulation's output")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def simulate(task_name: str, sim: SimulationOptions, options: dict[str, Any] | None = None, *,
             command: str | None = None, verbose: bool = False) -> Run:
    """Run ``task_name`` on the simulated federation ``sim`` with the task's ``options``; see the module docstring."""
    # heavy: the apps import the task registry (torch); tasks.runs loads matplotlib
    from fedinsight.coordinator.serverapp import app as server_app
    from fedinsight.partner.clientapp import app as client_app
    from fedinsight.tasks.runs import write_run_report

    task = registry.get(task_name)
    task_options = task.options.of(options or {}, what=task.name)  # refused before anything is written
    if not sim.out:
        raise ConfigError("give the run folder: --out FOLDER")
    out = Path(sim.out).resolve()
    task.simulation_dataset(sim.dataset)
    partners = sim.partners
    table = sim.rate_table()
    currencies: dict[str, str | None] | None = None
    if sim.dataset not in BUILTIN_DATASETS:  # a folder is read in place: check it before anything is written
        found = folder_federation(sim.dataset, sim.partners)
        partners = len(found.folders)
        currencies = _currencies(task, found.currencies(), table)  # a rate missing, or currencies mixed
    task.check(task_options, JobSettings(task=task.name, partners=partners or task.default_partners))
    check_ray_address(sim.ray_address)
    prepare_out_dir(out, sim.overwrite)
    started = time.perf_counter()
    federation = resolve(sim.dataset, partners=sim.partners, partition=sim.partition, alpha=sim.alpha,
                         seed=sim.seed, customers=sim.customers, out_dir=out, default_partners=task.default_partners)
    if currencies is None:
        currencies = _currencies(task, federation.currencies(), table)
    simulated = Simulated(dataset=sim.dataset, builtin=federation.builtin, data_root=federation.root,
                          partner_names=federation.names, out_dir=out, seed=sim.seed,
                          views=lambda purpose: federation.views(purpose, rates=table), facts=federation.facts,
                          vaults=federation.vaults)
    overrides = task.simulation_options(task_options, simulated)
    if overrides:
        task_options = task_options.replace(**overrides)
    budget = sim.budget if sim.budget is not None else task.simulation_budget(task_options)
    job = JobSettings(task=task.name, partners=len(federation.folders), out_dir=str(out),
                      data_root=str(federation.root), ledger_url=sim.db or f"sqlite:///{out / LEDGER}",
                      budget=budget, partner_caps=sim.partner_caps,
                      partner_ledger_url=f"sqlite:///{out / PARTNER_LEDGERS}", dataset=sim.dataset,
                      currency=sim.currency, rates=sim.rates, timeout=simulation_timeout(len(federation.folders)))
    task.check(task_options, job)
    baselines = task.simulation_baselines(task_options, simulated)
    run_config = merge_run_config(job, task_options)
    sim_started = time.perf_counter()
    handlers: dict[str, float] = {}
    context = run_simulation(run_config, job.partners, server_app=server_app, client_app=client_app, cpus=sim.cpus,
                             ray_address=sim.ray_address, verbose=verbose, handler_times=handlers)
    wall = time.perf_counter() - sim_started
    summary = task.simulation_summary(result_of(context), baselines)
    summary["timing"] = simulation_timing(summary.get("timing") or {}, wall, time.perf_counter() - started, handlers)
    summary["partner_folders"] = federation.names
    if record := currency_record(table, currencies):
        summary["currency"] = record
    summary = redact_tree(json_finite(summary))  # a --db password never reaches summary.json or --json
    try:
        task.check_result(summary)
    except FedinsightError as exc:
        write_failed(out, task.name, exc)
        raise
    (out / FAILED).unlink(missing_ok=True)  # an earlier failed run into this folder
    with atomic_output_file(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    _report(out, command, write_run_report, sim.db or None)
    return Run(task.name, out, summary, federation)


def simulation_timeout(partners: int) -> float:
    """Seconds to wait for each message round of a simulation: the job's default 600 s plus 3 s per partner. A few
    Ray workers serve a simulated round's partners one after another (a 1,000-partner hello on 2 busy cores took
    longer than 600 s: each worker opens each partner's files the first time it serves it)."""
    return 600.0 + 3.0 * partners


def simulation_timing(timing: dict[str, Any], wall: float, total: float, handlers: dict[str, float]) -> dict[str, Any]:
    """``summary.json["timing"]`` of a simulation: the task's own figures, the simulation's wall time, and its
    overhead = wall time / the partners' summed handler time (:mod:`fedinsight.federation.timing`; ``None`` when no
    handler time was recorded on this machine, e.g. every worker on other machines of a Ray cluster)."""
    busy = handler_seconds(handlers)
    return {**timing, "simulation_s": round(wall, 3), "wall_s": round(total, 3),
            "partner_handler_s": round(busy, 3) if busy else None,
            "partner_messages": int(handlers.get("messages", 0)), "ray_workers": int(handlers.get("workers", 0)),
            "federation_overhead": round(wall / busy, 3) if busy else None}


def _currencies(task: Task, declared: dict[str, str | None], table: RateTable | None) -> dict[str, str | None]:
    """The partners' declared currencies, checked against ``table`` when the task adds money up."""
    if not task.reads_amounts and table is None:
        return dict(declared)
    return partner_currencies(declared, table)


def currency_record(table: RateTable | None, currencies: dict[str, str | None]) -> dict[str, Any] | None:
    """``summary.json["currency"]`` of a simulation: the job's table and each partner's declared currency (the
    simulation reads every partner's mapping; a deployed job records the table only). Without a table it is
    recorded only when partners declare a currency (then they all declare the same one, or the run was refused)."""
    if table is not None:
        return table.record(currencies)
    declared = sorted({c for c in currencies.values() if c})
    if not declared:
        return None
    return {"reporting": None, "rates": {}, "amounts_in": declared[0],
            "partners": {name: code or NOT_DECLARED for name, code in sorted(currencies.items())}}


def _report(out: Path, command: str | None, write: Any, ledger_url: str | None) -> None:
    """``run.json`` (how the run was made) and ``report.html``. The run has succeeded by now: a report that
    cannot be written is a note (with the command to retry), never a failure that would hide the results."""
    from fedinsight.report import record_command  # heavy: loads matplotlib

    try:
        record_command(out, command or "")
        path = write(out, ledger_url=ledger_url)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        logging.getLogger(__name__).warning("no report written (%s: %s); retry with `fedinsight report %s`",
                                            type(exc).__name__, redact_secrets(str(exc)), out)
        return
    logging.getLogger(__name__).info("report: %s", path)


def finite_or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default

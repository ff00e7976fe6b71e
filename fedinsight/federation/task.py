"""The task contract: what every analysis declares, and the one loop that runs it.

A *task* is one kind of analysis (propensity, insights, recommend ...). It lives in one folder under
``fedinsight/tasks/`` and declares, as a :class:`Task` subclass:

- its ``name``, the consent ``purpose`` its partners' data is filtered by, and one ``options`` class
  (:mod:`fedinsight.federation.options`) from which the CLI, the Python API, the job API and the run
  config all derive;
- its **partner side**: handlers for its message kinds (``query``, ``train``, ``evaluate``), which get a
  :class:`Partner` -- the only door to the partner's customer data (protected, consent- and
  erasure-filtered), its budget gate and its encrypted storage -- never a file path;
- its **coordinator side**: :meth:`Task.plan` (the job's release manifest and what it costs, decided
  after the partners said hello and before any of them computes) and :meth:`Task.run` (the workflow);
- its **releases** (:mod:`fedinsight.federation.manifest`): every value a partner may send;
- its **report**: :meth:`Task.report_sections`.

:func:`start` owns what is the same for every task, in this order: read the settings, wait for the
partners, the shared ``hello`` (partner ids and the task's public facts, checked against the manifest),
plan, charge every partner's ledger (or refuse: nothing has been computed), run -- watching every reply, so
that partners that released nothing private under the job get their charge back when it ends
(:mod:`fedinsight.federation.exposure`) -- and write the one :class:`TaskResult` shape to ``summary.json``.
Tasks fill in steps; none of them re-implements the order.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from fedinsight.core.errors import ConfigError, FedinsightError, PartnerIdentityError, PartnerReplyError
from fedinsight.core.files import atomic_output_file
from fedinsight.core.redact import redact_tree
from fedinsight.federation import delta as deltas
from fedinsight.federation import progress
from fedinsight.federation.budget import BudgetGate, Charge, charge_before_compute, stated_epsilon, withdraw_unspent
from fedinsight.federation.exposure import Exposure, WatchedGrid
from fedinsight.federation.guard import ReplyGuard
from fedinsight.federation.job import JobSettings
from fedinsight.federation.manifest import PUBLIC, Manifest, Release
from fedinsight.federation.messages import PHASE, config_of, partner_error, request
from fedinsight.federation.options import Options
from fedinsight.federation.outcome import write_failed
from fedinsight.federation.partners import wait_for_partners
from fedinsight.federation.scan import Scan
from fedinsight.federation.simulation import tune_polling
from fedinsight.privacy.ledger import PrivacyLedger, threshold_delta

if TYPE_CHECKING:
    from fedinsight.data.schema import PartnerData

PARTNER_RECORD = "partner"
FACTS_RECORD = "facts"
PARTNER_ID_PATTERN = r"[\w .:()\[\]+&,#-]{1,128}"
"""A partner's name: letters (any script), digits, space, "_", "-", ".", ":", brackets, "+", "&", "," and "#" (folder
names such as ``华东零售 (GB18030)``, node ids)."""
log = logging.getLogger(__name__)
RESULT_KEY = "result"
"""The ServerApp's context.state record holding the job's summary (``{"json": ...}``): the only one."""


# --- the partner side ------------------------------------------------------------------------------

class Vault(Protocol):
    """The partner's encrypted storage for anything derived from its customers (AES-GCM, erasure-listed)."""

    def save(self, name: str, data: bytes, *, kind: str, job_id: str = "", purpose: str = "") -> Path: ...
    def load(self, name: str) -> bytes: ...
    def exists(self, name: str) -> bool: ...


class Partner(Protocol):
    """What a task's handler sees of the partner it runs on (built by :mod:`fedinsight.partner`)."""

    partner_id: str
    context: Context  # Flower's context: per-process state (SecAgg+ stages keep theirs here)
    deployed: bool  # a real partner (SuperNode) rather than a simulated one
    gate: BudgetGate
    vault: Vault

    def data(self) -> PartnerData:
        """The partner's tables for this task's purpose: validated, identifiers dropped or tokenized, customers
        without consent for the purpose and erased customers removed from every table."""
        ...

    def setting(self, key: str, default: Any = None) -> Any:
        """The partner's own setting (its node config), never the coordinator's word."""
        ...

    def scan(self, scan: Scan) -> Any:
        """``scan`` run inside the partner's engine over the same protected tables as :meth:`data` (a pandas frame,
        customer ids tokenized): for computations that must not hold the partner's rows in memory."""
        ...

    def scans(self, scans: list[Scan]) -> list[Any]:
        """Several scans over one preparation of the protected tables (consent and erasure applied once)."""
        ...

    def columns(self) -> dict[str, list[str]]:
        """The canonical tables the partner holds and the canonical columns of each that its protected tables keep
        (schema only: no table is read whole)."""
        ...

    def timezone(self) -> str:
        """The partner's own time zone (its mapping's), UTC when it declares none."""
        ...

    def token(self, customer_id: str) -> str:
        """A raw customer id as the partner's data view holds it (keyed token under the partner's key)."""
        ...

    def identities(self, tokens: Any) -> Any:
        """The partner's own ids of its customers' tokens (a pandas Series): for exports on the partner only."""
        ...


Handler = Callable[[Message, Partner], Message]


# --- the coordinator side --------------------------------------------------------------------------

@dataclass
class PartnerInfo:
    """A partner as the coordinator knows it after hello: its node, its id, the public facts it declared."""

    node: int
    partner_id: str
    facts: dict[str, Any] = field(default_factory=dict)
    delta_ceiling: float | None = None  # the largest delta it accepts, when it stated one (:mod:`.delta`)


@dataclass
class Plan:
    """What a job will release and what it costs, decided before any partner computes."""

    manifest: Manifest
    charges: list[Charge] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # what the plan adds to summary.json["privacy"]
    delta: float | None = None  # the delta the job's epsilon is stated at (default: the options' ``delta``)

    @classmethod
    def from_manifest(cls, manifest: Manifest, *, kind: str, **summary: Any) -> Plan:
        """One ledger line per DP release (its event composed ``count`` times)."""
        charges = []
        for r in manifest.private():
            from dp_accounting import dp_event

            event = r.event if r.count == 1 else dp_event.SelfComposedDpEvent(r.event, r.count)
            charges.append(Charge(kind, event, r.what or f"{r.reply}/{r.record}"))
        return cls(manifest, charges, summary)


@dataclass
class TaskResult:
    """The one shape of a task's result. The framework adds task, job, settings, privacy and messages."""

    summary: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> file in the job's output folder


class Session:
    """One job on the coordinator, as a task's workflow sees it."""

    def __init__(self, task: Task, grid: Grid, job: JobSettings, options: Options, nodes: list[int]) -> None:
        self.task, self.grid, self.job, self.options = task, grid, job, options
        self.nodes = nodes
        self.partners: dict[int, PartnerInfo] = {}
        facts = task.hello_facts_release(options)
        self.guard = ReplyGuard(Manifest(task.name, (*framework_hello(task), *([facts] if facts else []))))
        self.plan: Plan | None = None
        self.spent: dict[str, float] = {}
        self.created: list[str] = []  # partners whose budget this job's charge created (simulated partners)
        self.withdrawn: list[str] = []  # partners whose charge was taken back (they released nothing private)
        self.started = time.perf_counter()
        self.state: dict[str, Any] = {}  # the workflow's own bookkeeping
        self.delta_rule: str | None = None  # how the job's delta was chosen (:mod:`fedinsight.federation.delta`)

    # messages
    def config(self, phase: str, **extra: Any) -> dict[str, Any]:
        """What every partner needs with each message: the job's settings and options, and the phase."""
        base: dict[str, Any] = {"task": self.task.name, "job-id": self.job.job_id, PHASE: phase}
        if self.job.simulated:  # simulated partners do not get the run config: it travels in messages
            base.update({"data-root": self.job.data_root, "partner-caps": self.job.partner_caps,
                         "partner-ledger-url": self.job.partner_ledger_url})
        base.update(self.job.message_config())  # the public rate table: partners convert their amounts on read
        base.update(self.options.to_run_config())
        base.update(extra)
        return base

    def ask(self, kind: str, phase: str, *, config: dict[str, Any] | None = None,
            arrays: ArrayRecord | None = None, records: dict[str, Any] | None = None,
            nodes: Iterable[int] | None = None, strict: bool = True,
            reply: str | None = None, per_node: Callable[[int], dict[str, Any]] | None = None,
            ) -> dict[int, Message]:
        """Send one ``<kind>.<task>`` message per partner node; return the replies that pass the manifest.

        ``strict``: a partner's error reply raises its typed error (else it is recorded and that partner
        skipped). ``reply``: the manifest's name for this kind of reply (default: ``phase``).
        """
        targets = list(self.nodes if nodes is None else nodes)
        records = {**(records or {}), **({} if arrays is None else {"arrays": arrays})}
        messages = []
        for n in targets:
            cfg = {**(config if config is not None else self.config(phase)), **(per_node(n) if per_node else {})}
            messages.append(request(kind, self.task.name, n, cfg, **records))
        replies = list(self.grid.send_and_receive(messages, timeout=self.job.timeout))
        if strict:
            for r in replies:
                if r.has_error():
                    raise partner_error(str(r.error.reason), partner=self.name(r.metadata.src_node_id),
                                        what=f"{kind} {phase}")
            missing = sorted(set(targets) - {r.metadata.src_node_id for r in replies})
            if missing:
                raise PartnerReplyError(f"{len(missing)} partner(s) did not answer '{phase}' within "
                                        f"{self.job.timeout:.0f}s: {', '.join(self.name(n) for n in missing)}")
        kept = self.guard.check(replies, reply or phase)
        if strict and len(kept) < len(replies):
            raise PartnerReplyError(f"'{phase}' replies broke the {self.task.name} manifest: "
                                    + "; ".join(self.guard.violations[-3:]))
        return {m.metadata.src_node_id: m for m in kept}

    def name(self, node: int) -> str:
        info = self.partners.get(node)
        return info.partner_id if info else f"node {node}"

    @property
    def partner_ids(self) -> list[str]:
        return sorted(p.partner_id for p in self.partners.values())

    def hello(self, identities: Mapping[str, int | None] | None = None) -> None:
        """Ask every node for its partner id (and the task's public facts). ``identities``: partner id -> the
        Flower node id authenticated with that partner's registered key (a deployed coordinator's record); a node
        claiming an id bound to another node, or an id with no registered key, refuses the job before any plan
        or charge."""
        replies = self.ask("query", "hello", config=self.config("hello", **self.task.hello_config(self)))
        for node, msg in replies.items():
            facts = dict(msg.content[FACTS_RECORD]) if FACTS_RECORD in msg.content else {}
            self.partners[node] = PartnerInfo(node, str(msg.content[PARTNER_RECORD]["partner-id"]), facts,
                                              deltas.ceiling_of(msg))
        names = [p.partner_id for p in self.partners.values()]
        if len(set(names)) != len(names):
            raise ConfigError(f"two partner nodes claim the same partner id: {sorted(names)}")
        if identities is not None:
            check_identities(self.partners, identities)


def check_identities(partners: Mapping[int, PartnerInfo], identities: Mapping[str, int | None]) -> None:
    """PartnerIdentityError naming every node whose claimed partner id is not bound to its authenticated key."""
    owner = {node: pid for pid, node in identities.items() if node is not None}
    wrong = []
    for node, info in sorted(partners.items()):
        if identities.get(info.partner_id) == node:
            continue
        if node in owner:
            wrong.append(f"node {node} authenticated with the key registered for partner '{owner[node]}' but "
                         f"claims to be partner '{info.partner_id}'")
        else:
            wrong.append(f"node {node} claims to be partner '{info.partner_id}', whose key is not registered "
                         "with this coordinator (restart the coordinator after adding it to coordinator.toml)")
    if wrong:
        raise PartnerIdentityError("refused before any partner computed: " + "; ".join(wrong))


def framework_hello(task: Task) -> tuple[Release, ...]:
    """The hello records every task's partners may send: the partner's id and its delta ceiling."""
    return hello_release(task), deltas.delta_release()


def hello_release(task: Task) -> Release:
    return Release("hello", PARTNER_RECORD, {"partner-id": None}, PUBLIC, kind="text",
                   patterns={"partner-id": PARTNER_ID_PATTERN},
                   what="the partner's name (its ledger entry)", reason="names the partner, not a customer")


# --- simulations ------------------------------------------------------------------------------------

@dataclass
class Simulated:
    """A simulation's federation, as a task's simulation hooks see it (built by :mod:`fedinsight.simulation`).

    ``views(purpose)`` gives each partner's tables exactly as that partner's data view hands them to its
    handlers (validated, protected, consent- and erasure-filtered): baselines that pool "everyone's rows"
    pool what the partners would use, never their raw files.
    """

    dataset: str  # a built-in name, or the folder of partner folders
    builtin: bool
    data_root: Path
    partner_names: list[str]
    out_dir: Path
    seed: int
    views: Callable[[str], dict[str, PartnerData]]
    facts: dict[str, Any] = field(default_factory=dict)  # public facts of the dataset (e.g. a generator's window)
    vaults: Callable[[], dict[str, Vault]] | None = None  # each simulated partner's vault (partner-held keys a
    # baseline must split by exactly as the partner does, e.g. propensity's holdout key)


@dataclass
class Preview:
    """What a job will do, shown before it runs (a task's plan in words): a table, notes and an optional warning.

    Plain data, so every front end (the CLI's rich table, JSON, the API) renders it its own way."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    warning: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # the full plan, for --json


# --- the task --------------------------------------------------------------------------------------

class Task(ABC):
    """A kind of analysis (see the module docstring). Subclasses are registered in ``fedinsight.tasks``."""

    name: ClassVar[str]
    title: ClassVar[str]  # in words, for the CLI and the report
    purpose: ClassVar[str]  # the consent purpose partners filter their customers by
    options: ClassVar[type[Options]]
    min_partners: ClassVar[int] = 1
    default_partners: ClassVar[int] = 3  # how many partners a simulation of a built-in dataset splits it into
    aliases: ClassVar[tuple[str, ...]] = ()  # old names that still resolve to this task (stored job rows)
    reads_amounts: ClassVar[bool] = True
    """Whether the task reads money. One that does not (baskets counts customers) runs on partners in different
    currencies without a rate table: there is nothing to add up across currencies."""

    # partner side
    def purpose_for(self, config: Mapping[str, Any]) -> str:
        """The consent purpose a job's data is read for (a task may let an option choose it)."""
        return self.purpose

    @abstractmethod
    def handlers(self) -> Mapping[str, Handler]:
        """Message kind (``query``, ``train``, ``evaluate``) -> handler. ``query``'s ``hello`` phase is the
        framework's (it answers with :meth:`hello_facts`)."""

    def hello_facts(self, partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
        """Public facts the partner states in hello (declared in the manifest); a place to check that its data
        can serve the job at all, so a broken partner fails before any budget is charged."""
        return {}

    def is_private(self, options: Options) -> bool:
        """Whether a job with ``options`` makes DP releases (a task without an epsilon counts as private: its
        options say nothing to the contrary)."""
        return not (getattr(options, "non_private", False)
                    or not math.isfinite(float(getattr(options, "epsilon", 1.0))))

    def stated_delta(self, options: Options) -> float | None:
        """The delta a job with ``options`` is stated at, for the partners' delta rule in hello (``None``: not a DP
        job, or a delta the job takes from the partners' ceilings in hello, :mod:`fedinsight.federation.delta` --
        the rule then still holds at every spend)."""
        if not self.is_private(options):
            return None
        delta = getattr(options, "delta", None)
        return float(delta) if delta else None

    def hello_config(self, session: Session) -> dict[str, Any]:
        """What partners need in hello beyond the options (e.g. the public catalogue to check their data against)."""
        return {}

    def hello_facts_release(self, options: Options) -> Release | None:
        """The manifest entry of :meth:`hello_facts` (``None``: the task states none)."""
        return None

    def secure_fit(self) -> Callable[..., Any] | None:
        """The task's fit under SecAgg+ (:mod:`fedinsight.federation.secagg`), if it has one."""
        return None

    # coordinator side
    def check(self, options: Options, job: JobSettings) -> None:
        """Refuse a job whose options do not fit its settings (before anyone is contacted)."""
        if job.partners < self.min_partners:
            raise ConfigError(f"{self.name} needs at least {self.min_partners} partners (got {job.partners})")

    @abstractmethod
    def plan(self, session: Session) -> Plan:
        """The job's manifest and its charges (called after hello, before any partner computes)."""

    @abstractmethod
    def run(self, session: Session) -> TaskResult:
        """The workflow, once every partner has been charged."""

    # simulations (one machine playing every partner: defaults from the dataset, baselines on pooled views)
    def simulation_dataset(self, dataset: str) -> None:  # noqa: B027 - optional hook, no-op by default
        """Refuse a dataset the task cannot use (called before anything is written)."""

    def simulation_options(self, options: Options, sim: Simulated) -> dict[str, Any]:
        """Options the dataset decides when the user did not (e.g. the label window of a built-in dataset)."""
        return {}

    def simulation_budget(self, options: Options) -> float:
        """Each simulated partner's budget when the ledger has none yet: what this job needs (default)."""
        epsilon = getattr(options, "epsilon", None)
        return float(epsilon) if isinstance(epsilon, int | float) and math.isfinite(epsilon) else 10.0

    def simulation_baselines(self, options: Options, sim: Simulated) -> dict[str, Any]:
        """Non-federated baselines on the same partners' views (what the federated result is compared with)."""
        return {}

    def simulation_summary(self, summary: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
        """``summary.json`` with the baselines merged in (default: under ``baselines``)."""
        if baselines:
            summary["baselines"] = baselines
        return summary

    def preview(self, options: Options, partners: int) -> Preview | None:
        """The job's plan in words, shown before it runs (``None``: nothing worth showing)."""
        return None

    def check_result(self, summary: dict[str, Any]) -> None:  # noqa: B027 - optional hook, no-op by default
        """Raise the typed error a finished job's result stands for, if any (after its outputs are written)."""

    # report
    def headline(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        """A few lines for the terminal: the task's own (override), then what the job spent."""
        return privacy_headline(summary)

    def report_sections(self, summary: dict[str, Any], run_dir: Path) -> tuple[list[str], list[Any]]:
        """Cards and sections of the run report (default: the framework's generic results section)."""
        return [], []


# --- the one loop ----------------------------------------------------------------------------------

def settings_of(task: Task, run_config: Mapping[str, Any]) -> tuple[JobSettings, Options]:
    """The job's settings and the task's options from a run config (refused here if invalid)."""
    job = JobSettings.from_run_config(run_config, task=task.name)
    options = task.options.from_run_config(run_config)
    task.check(options, job)
    return job, options


def start(task: Task, grid: Grid, context: Context, *,
          identities: Mapping[str, int | None] | None = None) -> TaskResult:
    """Run one job of ``task`` (see the module docstring for the order, which is the privacy guarantee).
    ``identities``: the deployed coordinator's partner id -> authenticated node id bindings (not simulations)."""
    job, options = settings_of(task, dict(context.run_config))
    tune_polling(grid, job.partners)
    progress.report("connecting partners", 0, job.partners)
    nodes = wait_for_partners(grid, job.partners, job.timeout)[: job.partners]
    session = Session(task, grid, job, options, nodes)
    session.hello(None if job.simulated else identities)
    progress.report("connecting partners", job.partners, job.partners)
    session.options, session.delta_rule = deltas.resolve(
        session.options, [p.delta_ceiling for p in session.partners.values()], private=task.is_private(options))
    plan = task.plan(session)
    session.plan = plan
    session.guard.manifest = Manifest(task.name, (*framework_hello(task), *[
        r for r in plan.manifest.releases
        if r.reply != "hello" or r.record not in (PARTNER_RECORD, deltas.DELTA_RECORD)]))
    session.guard._specs.clear()
    exposure = None
    if plan.charges:
        ledger = PrivacyLedger(job.ledger)
        budget = None
        if job.budget is not None:
            # a new simulated partner's budget covers the job as stated: its delta plus its thresholding deltas
            events = [c.event for c in plan.charges]
            delta = job.budget_delta or job_delta(plan, session.options) + threshold_delta(events)
            budget = (job.budget, delta)
        try:
            known = set(ledger.partners())
            session.spent = charge_before_compute(ledger, session.partner_ids, plan.charges, job_id=job.job_id,
                                                  requester=job.requester, budget=budget)
        finally:
            ledger.engine.dispose()
        session.created = [p for p in session.partner_ids if p not in known]
        exposure = Exposure(session.guard.manifest)
        session.grid = WatchedGrid(grid, exposure)  # type: ignore[assignment]
    try:
        result = task.run(session)
    except Exception:
        if exposure is not None:
            _withdraw_unspent(session, exposure, failed=True)
        raise
    if exposure is not None:
        _withdraw_unspent(session, exposure, failed=False)
    conclude(task, job, finish(session, result), context)
    return result


def conclude(task: Task, job: JobSettings, summary: dict[str, Any], context: Context) -> None:
    """Hand a job's summary on: into ``context.state`` (a simulation's driver reads it there) and, when the task's
    own check (:meth:`Task.check_result`) passes, into ``summary.json``. When it fails (a preflight with a refusing
    partner) the job writes only the failed marker (:mod:`fedinsight.federation.outcome`); a deployed job then
    raises the task's error, so the coordinator records the job as failed with it. A simulation's driver makes the
    check itself, on the summary with its baselines, and writes the marker."""
    try:
        task.check_result(summary)
        failure = None
    except FedinsightError as exc:
        failure = exc
    if job.out_dir and failure is None:
        write_summary(Path(job.out_dir), summary)
    context.state[RESULT_KEY] = ConfigRecord({"json": json.dumps(summary)})
    if failure is not None and not job.simulated:
        if job.out_dir:
            write_failed(Path(job.out_dir), task.name, failure)
        raise failure


def _withdraw_unspent(session: Session, exposure: Exposure, *, failed: bool) -> None:
    """Take back the charge of every partner that released nothing private under this job (see
    :mod:`fedinsight.federation.exposure`). On a failed job this must not hide the job's own error."""
    idle = [p.partner_id for node, p in session.partners.items() if not exposure.exposed(node)]
    if not idle:
        return
    try:
        ledger = PrivacyLedger(session.job.ledger)
        try:
            session.withdrawn = withdraw_unspent(ledger, session.job.job_id, idle, created=session.created)
            known = set(ledger.partners())
            for pid in session.withdrawn:
                if pid in known:
                    session.spent[pid] = ledger.status(pid).epsilon_spent
                else:
                    session.spent.pop(pid, None)
        finally:
            ledger.engine.dispose()
    except Exception:
        if not failed:
            raise
        log.exception("job %s failed, and its charge of %s could not be withdrawn", session.job.job_id, idle)


def finish(session: Session, result: TaskResult) -> dict[str, Any]:
    """``summary.json``: the framework's part (task, job, settings, privacy, messages) around the task's."""
    job, plan = session.job, session.plan
    privacy: dict[str, Any] = dict(result.summary.pop("privacy", {}))
    if plan is not None:
        delta = job_delta(plan, session.options)
        events = [c.event for c in plan.charges]
        privacy.setdefault("epsilon_charged", stated_epsilon(events, delta) if events and delta else 0.0)
        if events:
            privacy.setdefault("delta", delta)
            if session.delta_rule:
                privacy.setdefault("delta_rule", session.delta_rule)
        if thresholds := threshold_delta(events):  # on every ledger, taken from the budget's delta
            privacy.setdefault("delta_thresholding", thresholds)
        privacy.setdefault("ledger_epsilon_after", {k: round(v, 6) for k, v in sorted(session.spent.items())})
        privacy.setdefault("releases", plan.manifest.describe())
        privacy.update(plan.summary)
        if session.withdrawn:  # partners that released nothing private: their charge was taken back
            privacy["charge_withdrawn"] = list(session.withdrawn)
    summary: dict[str, Any] = {
        "task": session.task.name, "job_id": job.job_id, "dataset": job.dataset, "partners": job.partners,
        "partner_ids": session.partner_ids, **result.summary, "privacy": privacy,
        "messages": session.guard.summary(), "artifacts": result.artifacts,
        "settings": session.options.settings(),
    }
    if (currency := job.currency_summary()) is not None:  # public configuration, like the settings
        summary["currency"] = currency
    timing = dict(summary.get("timing") or {})
    timing.setdefault("server_wall_s", round(time.perf_counter() - session.started, 3))
    summary["timing"] = timing
    return json_finite(summary)


def privacy_headline(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """What a job spent, in one or two lines (every task's headline ends with it)."""
    privacy = summary.get("privacy") or {}
    charged = privacy.get("epsilon_charged")
    after = privacy.get("ledger_epsilon_after") or {}
    rows = []
    if charged:
        delta = privacy.get("delta")
        rows.append(("epsilon charged per partner", f"{charged:.4g}" + (f" (delta {delta:.3g})" if delta else "")))
    else:
        rows.append(("privacy", "no DP release charged (public values only, or a non-private run)"))
    if after:
        rows.append(("ledger: epsilon spent so far", ", ".join(f"{k} {v:.4g}" for k, v in sorted(after.items()))))
    return rows


def json_finite(value: Any) -> Any:
    """JSON cannot hold NaN or infinity: they become null, recursively (numpy scalars become Python numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_finite(v) for v in value]
    if isinstance(value, np.floating | np.integer):
        return json_finite(value.item())
    if isinstance(value, np.ndarray):
        return json_finite(value.tolist())
    return value


def job_delta(plan: Plan, options: Options) -> float:
    """The delta a job's epsilon is stated at: the plan's, else the options', else 1e-6."""
    return float(plan.delta or getattr(options, "delta", None) or 1e-6)


def write_summary(out_dir: Path, summary: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "summary.json"
    with atomic_output_file(path) as tmp:  # no database password in a file that is shared
        tmp.write_text(json.dumps(redact_tree(summary), indent=2, allow_nan=False) + "\n")
    return path


def result_of(context: Context) -> dict[str, Any]:
    """The summary a job's ServerApp left in its context (simulation), or a ConfigError if it left none."""
    if RESULT_KEY not in context.state:
        raise ConfigError("the job ended without a result (see the log above)")
    return json.loads(str(context.state[RESULT_KEY]["json"]))  # type: ignore[index]


def partner_reply(msg: Message, partner_id: str, facts: Mapping[str, Any], kind: str = "metrics", *,
                  delta_ceiling: float | None = None) -> Message:
    """The shared hello reply: the partner's id, the task's public facts (numbers, or text), and the largest delta
    the partner accepts when the job asks for it (:mod:`fedinsight.federation.delta`)."""
    records: dict[str, Any] = {PARTNER_RECORD: ConfigRecord({"partner-id": partner_id})}
    if facts:
        records[FACTS_RECORD] = MetricRecord(dict(facts)) if kind == "metrics" else ConfigRecord(dict(facts))
    return Message(RecordDict(deltas.with_ceiling(records, delta_ceiling)), reply_to=msg)


def phase_of(msg: Message) -> str:
    return str(config_of(msg).get(PHASE, ""))


__all__ = ["Handler", "Partner", "PartnerInfo", "Plan", "Preview", "Session", "Task", "TaskResult", "FedinsightError",
           "start", "finish", "result_of", "settings_of", "json_finite"]

"""The coordinator process: SuperLink (TLS + SuperNode authentication) and the insights API, supervised.

``fedinsight coordinator start --config coordinator.toml`` runs, in order:

1. validate the configuration and every file it names (refuse to start with a message on any problem);
2. take the PID file (a second coordinator on the same state folder is refused), stop whatever a coordinator
   killed with ``kill -9`` left running (its per-child PID files, :mod:`fedinsight.core.children`), and check
   the ports, naming the process that holds one;
3. open the database: set partner budgets from the config (a changed budget is an explicit, recorded
   change, never a silent reset; spent budget stays spent), mark jobs a previous run left unfinished as
   failed (their Flower runs died with the old SuperLink), append ``coordinator.start`` to the audit log;
4. start ``flower-superlink`` with ``--ssl-*``, ``--enable-supernode-auth`` and
   ``--disable-runtime-dependency-installation``; its run state is deliberately in memory — fedinsight's
   database is the record, so a restarted SuperLink cannot resurrect an old run and charge budget twice;
5. register each configured partner's public key (idempotent), so only those partners can connect, and record
   the node id Flower bound to each key (:mod:`fedinsight.coordinator.identities`): a node claiming another
   partner's id is refused at every job's hello;
6. start the API under uvicorn (HTTPS with the coordinator certificate unless ``[api] tls = false``);
7. wait for SIGTERM/Ctrl-C or a child's unexpected exit, then stop the API, then the SuperLink and all
   their descendants, append ``coordinator.stop`` and remove the PID file. Children get SIGTERM from the
   kernel if this process dies without stopping them (``PR_SET_PDEATHSIG``).

Children inherit the database location through the environment (:mod:`fedinsight.coordinator.state`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from fedinsight.coordinator.config import CoordinatorConfig, load_coordinator_config
from fedinsight.coordinator.identities import write_partner_nodes
from fedinsight.coordinator.state import ENV_CONFIG, CoordinatorState
from fedinsight.core.children import ChildRecords, describe
from fedinsight.core.logs import log_tail
from fedinsight.core.procs import PidFile, Supervisor, check_port_free

Say = Callable[[str], None]


def apply_budgets(config: CoordinatorConfig, state: CoordinatorState) -> dict[str, str]:
    """Create missing budgets; record explicit changes when coordinator.toml changed one. Never resets spend."""
    out = {}
    for partner in config.partners:
        known = partner.id in state.ledger.partners()
        if not known:
            state.ledger.set_budget(partner.id, partner.epsilon, partner.delta, reason="coordinator.toml",
                                    changed_by="coordinator")
            out[partner.id] = "created"
            continue
        status = state.ledger.status(partner.id)
        if (status.epsilon_budget, status.delta) != (partner.epsilon, partner.delta):
            state.ledger.set_budget(partner.id, partner.epsilon, partner.delta,
                                    reason=f"changed in {config.source}", changed_by="coordinator")
            detail = {"old_epsilon": status.epsilon_budget, "new_epsilon": partner.epsilon, "old_delta": status.delta,
                      "new_delta": partner.delta, "spent": status.epsilon_spent}
            state.audit.append(actor="operator", role="operator", action="budget.change", target=partner.id,
                               outcome="ok", detail=detail)
            out[partner.id] = "changed"
        else:
            out[partner.id] = "unchanged"
    return out


def fail_interrupted_jobs(state: CoordinatorState) -> list[str]:
    """Jobs still marked submitted/running from a previous coordinator run are failed, with an audit entry."""
    from fedinsight.coordinator.jobs import finish_job  # heavy: imports the task registry (torch)

    failed = []
    for job in state.jobs.unfinished():
        finish_job(state, job, "failed", error="the coordinator stopped while this job was running", actor="system")
        failed.append(job.id)
    return failed


def superlink_command(config: CoordinatorConfig) -> list[str]:
    from fedinsight.coordinator.jobs import flwr_bin  # heavy: imports the task registry (torch)

    return [flwr_bin("flower-superlink"), "--ssl-ca-certfile", str(config.tls.ca_cert),
            "--ssl-certfile", str(config.tls.cert), "--ssl-keyfile", str(config.tls.key),
            "--enable-supernode-auth", "--disable-runtime-dependency-installation",
            "--host", config.superlink.host, "--port", str(config.superlink.port)]


def api_command(config: CoordinatorConfig) -> list[str]:
    cmd = [sys.executable, "-m", "uvicorn", "fedinsight.coordinator.api:app_from_env", "--factory",
           "--host", config.api.host, "--port", str(config.api.port), "--log-level", "warning", "--no-access-log",
           "--workers", str(config.api.workers)]
    if config.api.tls:
        cmd += ["--ssl-certfile", str(config.tls.cert), "--ssl-keyfile", str(config.tls.key)]
    return cmd


def child_env(config: CoordinatorConfig, state: CoordinatorState) -> dict[str, str]:
    from fedinsight.coordinator.jobs import flwr_env  # heavy: imports the task registry (torch)

    env = flwr_env(config.flwr_home)
    env.update(state.env())
    if config.source is not None:
        env[ENV_CONFIG] = str(config.source)
    return env


def run_coordinator(config_path: str | Path, *, say: Say = print, ready: Callable[[], None] | None = None,
                    verbose: bool = False, init_state: bool = False) -> int:
    """Start everything, block until stopped; 0 on a clean stop, non-zero if a child died on its own.
    ``verbose``: quote a dying child's routine (DEBUG/INFO) log lines too (its full log is in ``logs/``).
    Refuses to start on a lost or unreadable database while the state folder shows history, unless
    ``init_state`` (then the database is taken as it is and re-anchored, and the audit log says so)."""
    # heavy: coordinator.jobs imports the task registry (torch)
    from fedinsight.coordinator.jobs import register_partner_key, write_flwr_connection

    config = load_coordinator_config(config_path)
    pid_file = PidFile(config.pid_file, "coordinator")
    pid_file.acquire()  # refuses while a coordinator runs: only then may its recorded children be leftovers
    try:
        records = ChildRecords(config.children_dir)
        left = records.stop_leftovers(timeout=config.coordinator.stop_timeout)
        if left:
            say(f"stopped {len(left)} process(es) left by a coordinator that did not stop cleanly: {describe(left)}")
        for what, host, port in (("[superlink]", config.superlink.host, config.superlink.port),
                                 ("[api]", config.api.host, config.api.port)):
            check_port_free(what, host, port, config=config_path,
                            stop_command=f"fedinsight coordinator stop --config {config_path}")
    except BaseException:
        pid_file.release()
        raise
    supervisor = Supervisor(config.state_dir / "logs", stop_timeout=config.coordinator.stop_timeout, verbose=verbose,
                            records=records)
    supervisor.install_signal_handlers()
    state = CoordinatorState.from_config(config)
    code = 0
    state_ok = False  # until the state checks out, nothing may open (and so create) the database
    try:
        if init_state:
            replaced = state.init_state()
            say(f"started fresh state (the old audit anchor was at entry {replaced['anchor_seq']}; kept beside it)")
        else:
            state.check_integrity()
        state_ok = True
        budgets = apply_budgets(config, state)
        interrupted = fail_interrupted_jobs(state)
        if interrupted:
            say(f"marked {len(interrupted)} interrupted job(s) failed: {', '.join(interrupted)}")
        state.audit.append(actor="operator", role="operator", action="coordinator.start", target=str(config.source),
                           detail={"pid": os.getpid(), "budgets": budgets, "interrupted_jobs": interrupted})
        state.tokens  # noqa: B018 - create the token table and pepper before the API starts
        env = child_env(config, state)
        write_flwr_connection(config.flwr_home, config.coordinator.federation, config.superlink.control_address,
                              config.tls.ca_cert)
        link = supervisor.start("superlink", superlink_command(config), env)
        supervisor.wait_port(link, config.superlink.host, config.superlink.port)
        say(f"SuperLink (TLS, SuperNode auth) on {config.superlink.host}:{config.superlink.port}, PID {link.proc.pid}")
        nodes: dict[str, int | None] = {}
        for partner in config.partners:
            result, nodes[partner.id] = register_partner_key(config.flwr_home, config.coordinator.federation,
                                                             partner.public_key)
            say(f"partner {partner.id}: key {result}" + (f" (node {nodes[partner.id]})" if nodes[partner.id] else ""))
        write_partner_nodes(config.state_dir, nodes)  # each job's hello binds a claimed partner id to its key
        api = supervisor.start("api", api_command(config), env)
        supervisor.wait_port(api, config.api.host, config.api.port)
        say(f"insights API on {config.api_url}, PID {api.proc.pid}")
        if ready is not None:
            ready()
        died = supervisor.watch()
        if died is not None:
            code = 1
            say(f"{died.name} exited unexpectedly (code {died.proc.returncode}); stopping the coordinator. "
                f"Last lines of {died.log}:\n{log_tail(died.log, verbose=verbose)}")
    finally:
        try:
            codes = supervisor.stop_all()
            if state_ok:  # a refused start writes nothing: an entry would start a new chain and move the anchor
                state.audit.append(actor="operator", role="operator", action="coordinator.stop",
                                   target=str(config.source), outcome="ok" if code == 0 else "child-died",
                                   detail={"exit_codes": codes})
        finally:
            pid_file.release()
        say("coordinator stopped")
    return code

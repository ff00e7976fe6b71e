"""The partner process: validate local data, then run ``flower-supernode`` against the coordinator.

``fedinsight partner start --config partner.toml``:

1. validates the configuration, the CA certificate and the private key (which must be mode 0600);
2. validates the partner's data *before* joining — canonical schema, PII scan against its protection
   policy, tokenization keys (:mod:`fedinsight.partner.protection`) — a partner with broken data is refused
   here with every problem listed, instead of failing inside a job later;
3. takes the PID file and starts ``flower-supernode`` with ``--root-certificates`` (only the federation's
   CA is trusted), ``--auth-supernode-private-key`` (the coordinator admits registered keys only) and
   ``--node-config`` carrying the data path, partner id, protection policy (which names the tokenization
   key) and the partner's own
   ledger and local budget (enforced by the ClientApp on this machine). Runtime dependency installation
   stays off (Flower's SuperNode default), and its ClientApp API listens on loopback only;
4. stops the SuperNode and its ClientApp processes on SIGTERM/Ctrl-C (and the kernel stops them if this process
   is killed: ``PR_SET_PDEATHSIG``, plus per-child PID files the next start or ``partner stop`` reads); if the
   SuperNode exits by itself after it was admitted — the coordinator restarted, or was unreachable longer than
   ``max-wait-time`` — starts it again after 1, 2, 4 ... seconds (:mod:`fedinsight.partner.reconnect`); if it
   was never admitted — the coordinator refused an unregistered key — exits non-zero with the reason.

Nothing here opens a port to the outside: the partner dials out to the coordinator.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from fedinsight.core.children import ChildRecords, describe
from fedinsight.core.errors import ConfigError
from fedinsight.core.files import private_dir
from fedinsight.core.logs import log_tail
from fedinsight.core.procs import PidFile, Supervisor, check_port_free
from fedinsight.partner.config import PartnerConfig, load_partner_config
from fedinsight.partner.engine import KEYS as ENGINE_KEYS
from fedinsight.partner.engine import EngineSettings
from fedinsight.partner.reconnect import REFUSED, Reconnect, log_since
from fedinsight.partner.view import PartnerView

Say = Callable[[str], None]

AUTH_REFUSED_HINT = ("the coordinator refused this partner: its public key is probably not registered "
                     "(send <id>.pub to the operator) or the CA certificate does not match")


def validate_partner_data(config: PartnerConfig) -> dict[str, int]:
    """Run the partner's data view on its folder (schema, PII scan against the protection policy, tokenization
    keys, consent, erasures); rows per table, or the typed error listing what to fix."""
    engine = EngineSettings.from_node({k: getattr(config.partner, k.replace("-", "_")) for k in ENGINE_KEYS})
    view = PartnerView(config.partner.data_path, "analytics", policy_file=config.partner.protection_policy,
                       mapping_file=config.partner.mapping, engine=engine)  # a bad engine setting: refused here
    return {name: len(frame) for name, frame in view.tables().tables().items()}  # type: ignore[arg-type]


def _quote(value: str) -> str:
    if '"' in value or "'" in value:
        raise ConfigError(f"path {value!r} contains a quote character; Flower's --node-config cannot carry it")
    return f'"{value}"'


def node_config(config: PartnerConfig) -> str:
    """The ``--node-config`` string: what the ClientApp reads from ``context.node_config``."""
    items = {  # one spelling per key, read by every task's handlers (fedinsight.partner.settings)
        "partner-id": _quote(config.partner.id),
        "data-path": _quote(str(config.partner.data_path)),
        "state-dir": _quote(str(config.state_dir)),
        "ledger-url": _quote(config.ledger_url),
        "epsilon": repr(float(config.partner.epsilon)),
        "delta": repr(float(config.partner.delta)),
        "require-dp": "true",
    }
    if config.partner.protection_policy is not None:  # names the tokenization/encryption key files
        items["protection-policy"] = _quote(str(config.partner.protection_policy))
    if config.partner.mapping is not None:  # how the partner's own exports are read
        items["mapping"] = _quote(str(config.partner.mapping))
    for key in ENGINE_KEYS:  # its engine (docs/scale.md): stays on the partner, read by its data view
        value = getattr(config.partner, key.replace("-", "_"))
        if value is not None:
            items[key] = _quote(str(value))
    return " ".join(f"{k}={v}" for k, v in items.items())


def supernode_command(config: PartnerConfig) -> list[str]:
    bindir = Path(sys.executable).parent
    exe = bindir / "flower-supernode"
    cmd = [str(exe) if exe.exists() else "flower-supernode",
           "--root-certificates", str(config.superlink.ca_cert), "--superlink", config.superlink.address,
           "--auth-supernode-private-key", str(config.superlink.private_key), "--node-config", node_config(config),
           "--host", "127.0.0.1", "--port", str(config.runtime.port)]
    if config.superlink.max_retries is not None:
        cmd += ["--max-retries", str(config.superlink.max_retries)]
    if config.superlink.max_wait_time is not None:
        cmd += ["--max-wait-time", str(config.superlink.max_wait_time)]
    return cmd


def supernode_env(config: PartnerConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"FLWR_HOME": str(config.state_dir / "flwr"), "FLWR_TELEMETRY_ENABLED": "0",
                "FLWR_DISABLE_UPDATE_CHECK": "1", "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
                "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")})
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.25")  # each SecAgg+ stage waits on this poll
    return env


def run_partner(config_path: str | Path, *, say: Say = print, verbose: bool = False) -> int:
    """Validate, start the SuperNode, block until stopped; 0 on a clean stop. ``verbose``: quote the SuperNode's
    routine (DEBUG/INFO) log lines too when it dies (its full log is always in the state folder's ``logs/``)."""
    config = load_partner_config(config_path)
    rows = validate_partner_data(config)
    say(f"partner {config.partner.id}: data valid ({', '.join(f'{k} {v:,}' for k, v in rows.items())})")
    private_dir(config.state_dir)  # its ledger, PID file and logs: the partner's operator only
    pid_file = PidFile(config.pid_file, f"partner {config.partner.id}")
    pid_file.acquire()  # refuses while a partner runs: only then may its recorded children be leftovers
    try:
        records = ChildRecords(config.children_dir)
        left = records.stop_leftovers()
        if left:
            say(f"stopped {len(left)} process(es) left by a partner process that did not stop cleanly: "
                f"{describe(left)}")
        check_port_free("[runtime]", "127.0.0.1", config.runtime.port, config=config_path,
                        stop_command=f"fedinsight partner stop --config {config_path}")
    except BaseException:
        pid_file.release()
        raise
    supervisor = Supervisor(config.state_dir / "logs", verbose=verbose, records=records)
    supervisor.install_signal_handlers()
    code = 0
    backoff = Reconnect(max_delay=config.superlink.reconnect_max_delay)
    try:
        node = supervisor.start("supernode", supernode_command(config), supernode_env(config))
        say(f"SuperNode for {config.partner.id} -> {config.superlink.address} (TLS, key auth), PID {node.proc.pid}")
        while (died := supervisor.watch()) is not None:
            run_log = log_since(died.log, died.log_start)
            wait = backoff.after_exit(run_log) if config.superlink.reconnect else None
            if wait is None:
                code = died.proc.returncode or 1
                tail = log_tail(died.log, 25, verbose=verbose)
                hint = f" ({AUTH_REFUSED_HINT})" if any(mark in run_log for mark in REFUSED) else ""
                say(f"the SuperNode exited with code {died.proc.returncode}{hint}. Last lines of {died.log}:\n{tail}")
                break
            say(f"the SuperNode exited with code {died.proc.returncode} (the coordinator restarted or is "
                f"unreachable); starting it again in {wait:.0f}s (attempt {backoff.attempts})")
            if supervisor.stopping.wait(wait):
                break
            node = supervisor.restart(died)
            backoff.restarted()
            say(f"SuperNode for {config.partner.id} started again, PID {node.proc.pid}")
    finally:
        supervisor.stop_all()
        pid_file.release()
        say(f"partner {config.partner.id} stopped")
    return code

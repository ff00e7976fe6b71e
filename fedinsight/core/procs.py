"""Supervising long-lived child processes: PID files, ports, clean stops of whole process trees.

The coordinator runs ``flower-superlink`` and the API server; a partner runs ``flower-supernode``. Flower's
processes start their own helpers in new sessions (``flower-superexec``, one ``flwr-serverapp`` /
``flwr-clientapp`` per task), so stopping "the child" is not enough: :func:`stop_tree` snapshots every
descendant from ``/proc`` first, asks the child to stop (SIGTERM), then any descendant still alive, and
SIGKILLs whatever ignores both. Only processes we started, or started by them, are ever signalled.

A supervisor killed with ``kill -9`` cannot do any of that: its children get SIGTERM from the kernel
(``PR_SET_PDEATHSIG``, :mod:`fedinsight.core.deathsig`), and the PID files it kept for every child and
descendant (:mod:`fedinsight.core.children`) let the next ``start`` or ``stop`` find and stop whatever is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fedinsight.core.children import ChildRecords, command_name
from fedinsight.core.deathsig import die_with_parent
from fedinsight.core.errors import DeploymentError
from fedinsight.core.files import private_dir, private_file
from fedinsight.core.logs import log_tail
from fedinsight.core.ports import port_holder


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return state.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    return True


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (Linux ``/proc``), children before grandchildren."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    frontier = [pid]
    while frontier:
        nxt = []
        for p in frontier:
            for c in parents.get(p, []):
                out.append(c)
                nxt.append(c)
        frontier = nxt
    return out


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop_tree(proc: subprocess.Popen, *, timeout: float = 15.0) -> int | None:
    """Stop ``proc`` and everything it started; return its exit code (None if it had to be killed)."""
    tree = descendants(proc.pid)
    if proc.poll() is None:
        _signal(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        else:
            code = proc.returncode
    else:
        code = proc.returncode
    stop_pids([p for p in tree if pid_alive(p)], timeout=timeout)
    return code


def stop_pids(pids: Sequence[int], *, timeout: float = 15.0) -> None:
    """SIGTERM each pid, wait up to ``timeout`` for all, SIGKILL the rest."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            _signal(pid, signal.SIGKILL)


def check_port_free(what: str, host: str, port: int, *, config: str | Path, stop_command: str) -> None:
    """DeploymentError naming who holds ``port`` (PID and program) and what to do, if anything listens on it."""
    if not port_in_use(host, port):
        return
    holder = port_holder(port)
    if holder is None:
        raise DeploymentError(f"{what} port {port} on {host} is held by a process of another user (or outside "
                              f"this machine's view); stop it or choose another port in {config}")
    name = command_name(holder)
    ours = "" if not name.startswith(("flower-", "flwr", "uvicorn")) else (
        f"; if a previous coordinator or partner started it, run `{stop_command}`")
    raise DeploymentError(f"{what} port {port} on {host} is held by process {holder} ({name}){ours}; "
                          f"otherwise stop it or choose another port in {config}")


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on (host, port)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    with socket.socket(socket.AF_INET6 if ":" in target else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((target, port)) == 0


_PORTS_GIVEN: set[int] = set()
_PORTS_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now, and not one this process was given before.

    Tests and benchmarks choose several ports at run time and bind them later. The kernel picks a
    ``bind(("", 0))`` port at random among the free ones (about 14,000 on Linux), and a port handed out
    but not yet bound is free again: two calls in a row return the same port about once in 14,000, six
    calls about once in 1,000. Remembering the ports already given makes them distinct.
    """
    with _PORTS_LOCK:
        for _ in range(1000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _PORTS_GIVEN:
                _PORTS_GIVEN.add(port)
                return port
    raise DeploymentError(f"no free port on {host} that this process has not already handed out")


class PidFile:
    """A PID file that refuses a second instance and is removed on a clean stop."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = Path(path), what

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        pid = self.read()
        if pid is not None and pid != os.getpid() and pid_alive(pid):
            raise DeploymentError(f"the {self.what} is already running (PID {pid}, {self.path}); stop it first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(self.path)

    def release(self) -> None:
        if self.read() == os.getpid():
            self.path.unlink(missing_ok=True)


def stop_by_pid_file(path: Path, what: str, *, timeout: float = 30.0) -> int | None:
    """SIGTERM the process named by a PID file and wait for it to exit; its PID, or None if none ran."""
    pid = PidFile(path, what).read()
    if pid is None or not pid_alive(pid):
        Path(path).unlink(missing_ok=True)
        return None
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise DeploymentError(f"the {what} (PID {pid}) did not stop within {timeout:.0f}s")
        time.sleep(0.2)
    return pid


def stop_supervisor(path: Path, what: str, records: ChildRecords, *,
                    timeout: float = 30.0) -> tuple[int | None, list[str]]:
    """``stop``: the supervisor named by its PID file (it stops its own children), then any child or descendant
    its PID files still name (left by a supervisor that was killed). Its PID (None if it was not running) and
    the leftovers stopped, as ``program (PID n)``."""
    pid = stop_by_pid_file(path, what, timeout=timeout)
    left = records.stop_leftovers(timeout=min(timeout, 15.0))
    return pid, [f"{r.name} (PID {r.pid})" for r in left]


@dataclass
class Child:
    """A started child process, its log file and how to describe it."""

    name: str
    proc: subprocess.Popen
    log: Path
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)
    log_start: int = 0  # where this run's lines begin in the (appended) log


@dataclass
class Supervisor:
    """Starts children, watches them, stops them all (in reverse order) on SIGTERM/SIGINT or a child's death."""

    log_dir: Path
    stop_timeout: float = 15.0
    verbose: bool = False  # quote children's routine (DEBUG/INFO) log lines too
    records: ChildRecords | None = None  # PID files of every child's process tree (found after a kill -9)
    record_every: float = 2.0  # seconds between refreshes of the records while watching
    children: list[Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self, name: str, cmd: Sequence[str], env: dict[str, str]) -> Child:
        """Start ``cmd`` in its own session (a Ctrl-C meant for us does not reach it), logging to
        ``<log_dir>/<name>.log``; the kernel sends it SIGTERM if this process dies. Linux ties that signal to
        the *thread* that started the child: call this from the thread that supervises (the main thread)."""
        private_dir(self.log_dir)  # logs may quote paths, URLs and data problems: the operator only
        log = private_file(self.log_dir / f"{name}.log")
        offset = log.stat().st_size
        with open(log, "ab") as handle:
            proc = subprocess.Popen(list(cmd), env=env, stdout=handle, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent())
        child = Child(name, proc, log, tuple(cmd), dict(env), offset)
        self.children = [c for c in self.children if c.name != name] + [child]
        self.record(child)
        return child

    def restart(self, child: Child) -> Child:
        """Stop what is left of ``child``'s tree and start its command again (same log, appended)."""
        stop_tree(child.proc, timeout=self.stop_timeout)
        return self.start(child.name, child.cmd, child.env)

    def record(self, child: Child) -> None:
        """Write ``child``'s PID and its descendants' to its PID file (if this supervisor keeps records)."""
        if self.records is not None and child.proc.poll() is None:
            self.records.record(child.name, [child.proc.pid, *descendants(child.proc.pid)])

    def wait_port(self, child: Child, host: str, port: int, timeout: float = 180.0) -> None:
        """Wait until ``child`` listens on (host, port); DeploymentError with its log tail if it dies first.

        The deadline is generous on purpose (a loaded machine can take a minute to start a Python server);
        a child that fails ends the wait at once."""
        deadline = time.monotonic() + timeout
        while not port_in_use(host, port):
            if child.proc.poll() is not None:
                raise DeploymentError(f"{child.name} exited with code {child.proc.returncode} while starting; "
                                      f"last lines of {child.log}:\n{log_tail(child.log, verbose=self.verbose)}")
            if time.monotonic() > deadline:
                raise DeploymentError(f"{child.name} did not listen on {host}:{port} within {timeout:.0f}s; "
                                      f"see {child.log}")
            time.sleep(0.2)

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT (Ctrl-C) set the stop flag; :meth:`watch` then returns."""
        def handler(signum: int, _frame: object) -> None:
            self.stopping.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def watch(self, poll: float = 0.5) -> Child | None:
        """Block until asked to stop (returns None) or a child exits on its own (returns that child).
        Meanwhile the PID files follow each child's tree (Flower starts a process per job)."""
        recorded = time.monotonic()
        while not self.stopping.wait(poll):
            for child in self.children:
                if child.proc.poll() is not None:
                    return child
            if time.monotonic() - recorded >= self.record_every:
                for child in self.children:
                    self.record(child)
                recorded = time.monotonic()
        return None

    def stop_all(self) -> dict[str, int | None]:
        codes = {}
        for child in reversed(self.children):
            self.record(child)  # the latest tree: whatever stop_tree misses, the next start finds
            codes[child.name] = stop_tree(child.proc, timeout=self.stop_timeout)
        if self.records is not None:
            self.records.stop_leftovers(timeout=self.stop_timeout)  # re-parented descendants; then forget all
        return codes

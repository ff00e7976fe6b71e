"""A supervisor killed with ``kill -9`` leaves nothing running: its children get SIGTERM from the kernel
(``PR_SET_PDEATHSIG``), and what the death signal cannot reach (a grandchild in its own session, re-parented
to PID 1) is named by the PID files and stopped by the next start or ``stop``.

A real supervisor runs in its own process here (a small script using :class:`Supervisor`), so the test can
``kill -9`` it. Waits poll by PID with a generous bound; nothing asserts on elapsed time. Every process the
test starts is stopped by its PID in ``finally``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fedinsight.core.children import ChildRecords, command_name, process_stat
from fedinsight.core.errors import DeploymentError
from fedinsight.core.procs import check_port_free, pid_alive

# the child: starts a grandchild in a new session (as Flower's processes start theirs), then waits
CHILD = textwrap.dedent("""
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    time.sleep(600)
""")

# the supervisor: one child, PID files refreshed every 0.2 s, then watch until killed
SUPERVISOR = textwrap.dedent("""
    import sys
    from pathlib import Path
    from fedinsight.core.children import ChildRecords
    from fedinsight.core.procs import Supervisor
    root = Path(sys.argv[1])
    sup = Supervisor(root / "logs", records=ChildRecords(root / "pids"), record_every=0.2)
    sup.start("worker", [sys.executable, "-c", sys.argv[2]], {"PATH": "/usr/bin:/bin"})
    sup.watch(poll=0.1)
""")


def _wait(condition, what: str, bound: float = 60.0) -> None:
    """Poll ``condition`` until true; the bound only keeps a broken run from hanging (not a timing assertion)."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _kill(pids: list[int]) -> None:
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_kill_9_of_the_supervisor_leaves_no_process_running(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(tmp_path), CHILD], env=env)
    records = ChildRecords(tmp_path / "pids")
    started: list[int] = []
    try:
        _wait(lambda: len(records.alive()) == 2, "the PID file to name the child and its grandchild")
        started = [r.pid for r in records.recorded()]
        child, grandchild = started
        assert process_stat(grandchild) is not None and os.getsid(grandchild) != os.getsid(child)

        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait()
        # the kernel's death signal stops the direct child ...
        _wait(lambda: not pid_alive(child), f"the child {child} to die with its supervisor")
        # ... the grandchild, in its own session and re-parented, is still running: the PID files name it
        assert pid_alive(grandchild)
        assert [r.pid for r in records.alive()] == [grandchild]
        left = records.stop_leftovers(timeout=10)
        assert [r.pid for r in left] == [grandchild]
        assert not pid_alive(grandchild) and records.recorded() == []
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        _kill(started)


def test_a_recorded_pid_reused_by_another_process_is_never_signalled(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        _wait(lambda: process_stat(other.pid) is not None, "the process to appear in /proc")
        start = process_stat(other.pid)[1]  # type: ignore[index]
        # a record naming this PID with another start time: a previous process that had the same PID
        (tmp_path / "pids").mkdir()
        (tmp_path / "pids" / "superlink.pids").write_text(f"{other.pid} {start - 1} flower-superlink\n")
        records = ChildRecords(tmp_path / "pids")
        assert records.alive() == []
        assert records.stop_leftovers(timeout=5) == []
        assert other.poll() is None  # untouched
    finally:
        other.kill()
        other.wait()


def test_a_held_port_names_the_process_that_holds_it():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(DeploymentError) as caught:
            check_port_free("[superlink]", "127.0.0.1", port, config="coordinator.toml",
                            stop_command="fedinsight coordinator stop --config coordinator.toml")
    message = str(caught.value)
    assert f"port {port} on 127.0.0.1 is held by process {os.getpid()} (" in message
    assert "coordinator.toml" in message
    check_port_free("[superlink]", "127.0.0.1", port, config="c.toml", stop_command="x")  # closed: free again


def test_stop_after_a_killed_supervisor_stops_what_its_pid_files_name(tmp_path):
    from fedinsight.core.procs import stop_supervisor

    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        _wait(lambda: process_stat(orphan.pid) is not None, "the process to appear in /proc")
        records = ChildRecords(tmp_path / "pids")
        records.record("superlink", [orphan.pid])
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (tmp_path / "coordinator.pid").write_text(f"{dead.pid}\n")  # the supervisor is gone
        name = command_name(orphan.pid)
        assert name.startswith("python")
        pid, left = stop_supervisor(tmp_path / "coordinator.pid", "coordinator", records, timeout=10)
        assert pid is None and left == [f"{name} (PID {orphan.pid})"]
        assert orphan.wait(timeout=30) is not None and records.recorded() == []
        assert not (tmp_path / "coordinator.pid").exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


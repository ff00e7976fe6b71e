"""PID files for a supervisor's children and their descendants, so that a later ``start`` or ``stop`` finds
and stops what a killed supervisor left behind.

Why both this and ``PR_SET_PDEATHSIG`` (:mod:`fedinsight.core.deathsig`): the death signal reaches direct
children only, a child may ignore or outlive it, and a grandchild whose parent died is re-parented to PID 1
where no process tree leads to it any more. So the supervisor writes, for every child, the PIDs of the child
and of everything it started (refreshed while it watches), each with its kernel start time: a recorded PID
is only ever signalled while ``/proc/<pid>/stat`` shows the same start time, so a PID reused by an unrelated
process is never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fedinsight.core.files import private_dir, private_file


@dataclass(frozen=True)
class Recorded:
    """One recorded process: which child it belongs to, its PID, kernel start time and command name."""

    child: str
    pid: int
    start: int
    name: str

    def alive(self) -> bool:
        """Still running, and still the same process (same start time; not a zombie)."""
        stat = process_stat(self.pid)
        return stat is not None and stat[1] == self.start and stat[2] != "Z"


def process_stat(pid: int) -> tuple[str, int, str] | None:
    """(command name, start time in clock ticks, state letter) from ``/proc/<pid>/stat``; None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    head, _, tail = raw.rpartition(")")
    fields = tail.split()
    try:
        return head.partition("(")[2], int(fields[19]), fields[0]
    except (IndexError, ValueError):
        return None


def command_name(pid: int) -> str:
    """The process's command line, shortened to its program name (``flower-superlink``, ``uvicorn`` ...)."""
    with contextlib.suppress(OSError):
        argv = [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        words = [os.path.basename(a.decode(errors="replace")) for a in argv[:4]]
        for word in words:
            if word == "-c":  # python -c CODE: the interpreter is the best name
                break
            if not word.startswith("python") and not word.startswith("-"):
                return word[:60]
        if words:
            return words[0][:60]
    stat = process_stat(pid)
    return stat[0] if stat else "?"


class ChildRecords:
    """``<folder>/<child>.pids``: one line ``PID START NAME`` per process of that child's tree."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def record(self, child: str, pids: Iterable[int]) -> None:
        """Replace ``child``'s record with ``pids`` (those still running; the first is the child itself)."""
        lines = []
        for pid in dict.fromkeys(pids):
            stat = process_stat(pid)
            if stat is not None:
                lines.append(f"{pid} {stat[1]} {command_name(pid)}")
        private_dir(self.folder)
        path = self.folder / f"{child}.pids"
        tmp = private_file(path.with_suffix(".tmp"))
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)

    def forget(self, child: str) -> None:
        (self.folder / f"{child}.pids").unlink(missing_ok=True)

    def recorded(self) -> list[Recorded]:
        out = []
        for path in sorted(self.folder.glob("*.pids")) if self.folder.is_dir() else []:
            with contextlib.suppress(OSError):
                for line in path.read_text().splitlines():
                    parts = line.split(maxsplit=2)
                    with contextlib.suppress(ValueError, IndexError):
                        out.append(Recorded(path.stem, int(parts[0]), int(parts[1]), parts[2] if len(parts) > 2
                                            else "?"))
        return out

    def alive(self) -> list[Recorded]:
        """Recorded processes still running (a supervisor that died left them)."""
        return [r for r in self.recorded() if r.alive()]

    def stop_leftovers(self, *, timeout: float = 15.0) -> list[Recorded]:
        """SIGTERM every recorded process still running, wait up to ``timeout``, SIGKILL the rest; forget them all.
        Returns what was running. Only the processes named in the records are signalled."""
        left = self.alive()
        for r in left:
            _signal(r.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(r.alive() for r in left):
            time.sleep(0.1)
        for r in left:
            if r.alive():
                _signal(r.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(r.alive() for r in left):
            time.sleep(0.05)
        for path in self.folder.glob("*.pids") if self.folder.is_dir() else []:
            path.unlink(missing_ok=True)
        return left


def describe(records: Iterable[Recorded]) -> str:
    """``flower-superlink (PID 1234), uvicorn (PID 1240)``."""
    return ", ".join(f"{r.name} (PID {r.pid})" for r in records)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)

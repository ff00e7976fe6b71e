"""Children that die with their supervisor: Linux ``PR_SET_PDEATHSIG``.

When a supervisor is killed with ``kill -9`` it cannot stop its children, and Flower's processes run in
their own sessions, so nothing else would: they kept ports and GBs of memory, and the next start failed.
Asking the kernel, in the child between ``fork`` and ``exec``, to send SIGTERM when the parent dies closes
that gap for direct children (their own children follow through Flower's ``--parent-pid`` monitors).
It does not cover every case (a child that re-parents itself, a non-Linux host, a signal the child
ignores), so supervisors also keep per-child PID files (:mod:`fedinsight.core.children`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies (None off Linux).

    The parent's PID is read now, before ``fork``: if the parent died between ``fork`` and ``prctl`` the
    child's parent has already changed, and it exits at once instead of running as an orphan."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec

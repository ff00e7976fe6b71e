"""Progress of a running job, one channel for every task.

A task reports ``(stage, done, total, info)`` through :func:`report`; whoever runs the job in this process
(the CLI's progress bars, a notebook) listens with :func:`listening`. In simulation the ServerApp runs in
the caller's process, so the events arrive live; on a coordinator nobody listens and they cost nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Listener = Callable[[str, int, int, dict[str, Any]], None]
_LISTENERS: list[Listener] = []
_LOCK = threading.Lock()


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Receive every job's progress events while the block runs."""
    with _LOCK:
        _LISTENERS.append(listener)
    try:
        yield
    finally:
        with _LOCK:
            _LISTENERS.remove(listener)


def report(stage: str, done: int = 0, total: int = 0, **info: Any) -> None:
    """Tell the listeners that ``stage`` is at ``done`` of ``total`` (``info``: e.g. the round's AUC)."""
    with _LOCK:
        listeners = list(_LISTENERS)
    for listener in listeners:
        listener(stage, done, total, info)

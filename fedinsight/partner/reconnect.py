"""When a partner's SuperNode exits on its own: start it again with back-off, or give up with the reason.

Why: the coordinator's SuperLink keeps its node registry in memory (fedinsight's database is the record), so
after a coordinator restart every running SuperNode's heartbeat is refused (401: its node id is unknown) and
Flower's SuperNode exits. Starting the SuperNode again activates the same key under the new registry. A partner
that was never admitted, though, failed for a reason that a retry would only hide (most often its key is not
registered: the operator must add ``<id>.pub`` to coordinator.toml), so it stops with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

ADMITTED = "SuperNode ID:"  # Flower logs this once the SuperLink accepted the node's key
REFUSED = ("Failed to activate", "305")  # Flower's "Failed to activate SuperNode" (error code 305)


def log_since(path: Path, offset: int) -> str:
    """The log's text from byte ``offset`` (one run of the SuperNode: the log is appended across restarts)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


@dataclass
class Reconnect:
    """Back-off state across SuperNode runs: 1, 2, 4 ... seconds up to ``max_delay``; back to 1 after a run
    that stayed up longer than ``max_delay`` (a fresh outage, not the same one going on)."""

    max_delay: float = 60.0
    admitted: bool = False  # the SuperLink accepted this partner's key at least once since the process started
    attempts: int = 0
    delay: float = field(default=1.0, init=False)
    started: float = field(default_factory=time.monotonic, init=False)

    def after_exit(self, run_log: str) -> float | None:
        """Seconds to wait before starting the SuperNode again, or None to give up: a SuperNode never admitted
        since this process started failed for a reason a retry would only hide (an unregistered key, a wrong
        address or certificate, ``max-wait-time`` reached before the coordinator came up)."""
        self.admitted = self.admitted or ADMITTED in run_log
        if not self.admitted:
            return None
        if time.monotonic() - self.started > self.max_delay:
            self.delay = 1.0
        wait, self.delay = self.delay, min(self.delay * 2, self.max_delay)
        self.attempts += 1
        return wait

    def restarted(self) -> None:
        self.started = time.monotonic()

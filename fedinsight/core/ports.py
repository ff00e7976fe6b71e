"""Which process holds a listening TCP port (Linux ``/proc``), to name the real cause when a start fails.

"Port already in use, choose another" sent operators to edit a correct configuration when the port was held
by the previous coordinator's own SuperLink; naming the holder (PID and program) says what to stop instead.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

LISTEN = "0A"


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (any address, IPv4 or IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def port_holder(port: int) -> int | None:
    """The PID of a process listening on ``port``, or None (free, or held by another user's process)."""
    inodes = {f"socket:[{i}]" for i in listening_inodes(port)}
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.scandir(entry / "fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in inodes:
                        return int(entry.name)
    return None

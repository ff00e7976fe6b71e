"""Routine log lines of the libraries underneath (Flower, Ray, Opacus), told apart from what a user must see.

Why: Flower logs every round, every node registration and its own bookkeeping at DEBUG/INFO, and fedinsight
passes some of its processes' output on (``job run`` streams ``flwr log``; ``partner start`` and
``coordinator start`` quote a child's log when it dies). Those lines are for whoever debugs Flower
(``--verbose``), not for a partner's data engineer: by default only warnings, errors and anything that is not
a log line of those libraries (tracebacks, fedinsight's own messages) are shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ROUTINE = re.compile(
    r"^(?:\([\w:. -]+ pid=\d+(?:, ip=[\d.]+)?\)\s*)?"  # Ray's prefix of a forwarded worker line
    r"(?:"
    r"(?:DEBUG|INFO)\s*(?:\d{4}-\d\d-\d\d [\d:,.]+)?\s*:"  # Flower's "INFO :      ...", uvicorn's "INFO:     ..."
    r"|\d\d/\d\d/\d{4} [\d:]+:(?:DEBUG|INFO):"  # the root handler some libraries install (Opacus)
    r"|\d{4}-\d\d-\d\d [\d:,.]+\s+(?:DEBUG|INFO)\s"  # Ray's own format: "2026-01-01 10:00:00,000 INFO ..."
    r"|\[\d{4}-\d\d-\d\d [\d:,.]+\s+(?:D|I)\s+\d+\s+\d+\]"  # Ray's core-worker (C++) format
    r")"
)


def plain(line: str) -> str:
    """``line`` without terminal colour codes."""
    return _ANSI.sub("", line)


def is_routine(line: str) -> bool:
    """A DEBUG or INFO line of Flower, Ray or a library's root handler (shown only with ``--verbose``)."""
    return bool(_ROUTINE.match(plain(line).lstrip()))


def worth_showing(lines: Iterable[str], *, verbose: bool = False) -> list[str]:
    """The lines a user sees: all of them with ``verbose``, else all but the routine ones (and blank lines)."""
    return [line for line in lines if line.strip() and (verbose or not is_routine(line))]


def log_tail(path: Path, lines: int = 15, *, verbose: bool = False) -> str:
    """The last ``lines`` lines of a child's log worth showing (``verbose``: every line), or a pointer to the file
    when only routine lines are left."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    kept = worth_showing(text, verbose=verbose)[-lines:]
    if not kept and text:
        return f"(only routine log lines; see {path} or run with --verbose)"
    return "\n".join(plain(line) for line in kept)

"""A job that fails its task's check (:meth:`~fedinsight.federation.task.Task.check_result`, e.g. a preflight in
which a partner refused its data) leaves one thing in its output folder: ``FAILED.json``, saying which task failed
and why, in the words the user was shown. No ``summary.json``, report or run record: those would read like a
finished run. Shared by simulations (:mod:`fedinsight.simulation.run`) and deployed jobs
(:func:`fedinsight.federation.task.start`)."""

from __future__ import annotations

import json
from pathlib import Path

from fedinsight.core.errors import FedinsightError
from fedinsight.core.files import atomic_output_file
from fedinsight.core.redact import redact_secrets

FAILED = "FAILED.json"


def write_failed(out: Path, task: str, exc: FedinsightError) -> Path:
    """Write the failed marker into ``out``: the task, that it failed, and the (value-free) error message."""
    out.mkdir(parents=True, exist_ok=True)
    record = {"task": task, "status": "failed", "error": type(exc).__name__, "message": redact_secrets(str(exc))}
    with atomic_output_file(out / FAILED) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return out / FAILED

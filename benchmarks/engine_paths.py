"""What the "pandas path vs the partner's engine" benchmarks share: one synthetic CSV partner, each path measured in
its own process, and that process's own peak memory.

Used by ``uplift_engine.py``, ``recommend_engine.py``, ``targets_engine.py`` and ``contacts_engine.py`` (run
them, not this file). Each child is this interpreter running the calling script with ``--measure KIND`` plus the
script's own arguments; it prints one JSON line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def peak_mb() -> float:
    """This process's own peak resident memory (``VmHWM``: reset by ``exec``). Not ``wait4``'s ``ru_maxrss``: Linux
    keeps that across ``exec``, so a child started by a parent holding the generated frames reported the parent's
    size (both uplift paths read ~1.3 GB that way at 100,000 customers)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def run_child(script: str, kind: str, *args: str) -> dict[str, float]:
    """``script --measure kind args...`` in a fresh interpreter; its last output line as JSON."""
    proc = subprocess.Popen([sys.executable, script, "--measure", kind, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    if proc.wait() != 0:
        raise SystemExit(f"{kind} failed")
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def write_synth_partner(folder: Path, customers: int,
                        edit: Callable[[dict[str, pd.DataFrame]], None] | None = None) -> dict[str, pd.DataFrame]:
    """One partner of ``data synth``'s generator as CSV files with ``partner init``'s policy; its tables (``edit``
    changes them in place before they are written, e.g. adds a column)."""
    from fedinsight.data.synth import SynthConfig, generate_partner_frames
    from fedinsight.partner.policy_init import init_partner

    frames, _ = generate_partner_frames(SynthConfig(customers=customers, partners=1, seed=1))
    (tables,) = frames.values()
    if edit is not None:
        edit(tables)
    folder.mkdir(parents=True)
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    init_partner(folder)
    return tables


def row_counts(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    return {name: len(frame) for name, frame in tables.items()}

"""Writing a planted synthetic federation: one folder of CSV files per partner, and the truth beside them.

Shared by the generators whose truth the benchmarks check (``synth_baskets``, ``synth_segments``,
``synth_interactions``): each makes its frames and its truth its own way; the layout on disk is one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd


def write_federation(root: str | Path, frames: Mapping[str, Mapping[str, pd.DataFrame]],
                     truth: dict[str, Any]) -> Path:
    """``root/<partner>/<table>.csv`` for every partner's tables and ``root/ground_truth.json``; returns ``root``."""
    root = Path(root)
    for partner, tables in frames.items():
        folder = root / partner
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            frame.to_csv(folder / f"{name}.csv", index=False)
    (root / "ground_truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return root

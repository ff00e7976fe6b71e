"""Peak memory of ``data validate`` on large CSV files: streamed batches against one whole read, side by side.

For each size, a canonical ``transactions.csv`` is written (synthetic values, one bad amount near the end) and
validated twice, each time in a fresh process that reports its own peak resident memory (``VmHWM``: counted
from its ``exec``, unlike ``ru_maxrss``, which on Linux includes the parent's memory copied at ``fork``):

* ``streamed``: ``validate_paths`` as ``data validate`` runs it (batches of 8 MiB of text);
* ``whole``: the same call with a batch larger than the file, i.e. the whole-file read used before.

Both must report the same problems.
Run: ``nice -n 10 .venv/bin/python benchmarks/validate_memory.py
[--sizes 50,200]`` (sizes in MB; about 2 minutes for the default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys
from fedinsight.data.validate import validate_paths
_, problems = validate_paths([sys.argv[1]], block_bytes=int(sys.argv[2]))
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"problems": [str(p) for p in problems], "peak_kb": peak}))
"""


def write_file(path: Path, megabytes: int) -> int:
    """About ``megabytes`` MB of transactions; returns the number of rows."""
    rows = int(megabytes * 1e6 / 52)
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2024-01-01").value // 10**9
    frame = pd.DataFrame({
        "transaction_id": np.char.add("t", np.arange(rows).astype(str)),
        "customer_id": np.char.add("c", rng.integers(0, 200_000, rows).astype(str)),
        "timestamp": pd.to_datetime(start + rng.integers(0, 3e7, rows), unit="s").strftime("%Y-%m-%d %H:%M:%S"),
        "amount": np.round(rng.gamma(2.0, 20.0, rows), 2).astype(str),
        "quantity": rng.integers(1, 5, rows).astype(str),
    })
    frame.loc[rows - 10, "amount"] = "twelve"
    frame.to_csv(path, index=False)
    return rows


def peak_rss_mb(path: Path, block_bytes: int) -> tuple[float, dict[str, object]]:
    """Run one validation in a fresh process; its peak RSS in MB and its result."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(block_bytes)], env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        return float("nan"), {"seconds": round(seconds, 1), "problems": proc.stderr[-500:]}
    out = json.loads(proc.stdout)
    return out["peak_kb"] / 1024, {"seconds": round(seconds, 1), "problems": out["problems"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="50,200", help="file sizes in MB, comma-separated")
    args = parser.parse_args()
    report = []
    with tempfile.TemporaryDirectory(prefix="fedinsight-validate-") as tmp:
        for mb in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"size{mb}" / "transactions.csv"
            path.parent.mkdir()
            rows = write_file(path, mb)
            size = path.stat().st_size
            streamed_rss, streamed = peak_rss_mb(path, 8 << 20)
            whole_rss, whole = peak_rss_mb(path, size + 1)
            report.append({"file_mb": round(size / 1e6, 1), "rows": rows,
                           "streamed": {"peak_rss_mb": round(streamed_rss), "seconds": streamed["seconds"]},
                           "whole": {"peak_rss_mb": round(whole_rss), "seconds": whole["seconds"]},
                           "same_problems": streamed["problems"] == whole["problems"],
                           "problems": streamed["problems"]})
            path.unlink()
    print(json.dumps({"load_average_1m": round(os.getloadavg()[0], 1), "runs": report}, indent=2))


if __name__ == "__main__":
    main()

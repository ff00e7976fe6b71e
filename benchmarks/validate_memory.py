"""Peak memory of ``data validate`` on large CSV and Parquet files: streamed batches against one whole read, side
by side.

For each size, a canonical ``transactions.csv`` is written (synthetic values, one bad amount near the end) and
validated twice, each time in a fresh process that reports its own peak resident memory (``VmHWM``: counted
from its ``exec``, unlike ``ru_maxrss``, which on Linux includes the parent's memory copied at ``fork``):

* ``streamed``: ``validate_paths`` as ``data validate`` runs it (batches of 8 MiB of text);
* ``whole``: the same call with a batch larger than the file, i.e. the whole-file read used before.

Both must report the same problems. A Parquet case holds the same rows (text amounts, typed timestamps and
quantities, row groups of 250,000 rows), streamed with ``ParquetFile.iter_batches``; its problems are compared
as sets (batches find them in another order than a whole read).
Run: ``nice -n 10 .venv/bin/python benchmarks/validate_memory.py
[--sizes 50,200] [--parquet-sizes 200]`` (sizes in MB; about 3 minutes for the default).
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


def make_frame(megabytes: int) -> pd.DataFrame:
    """About ``megabytes`` MB (as CSV) of transactions, every value as text, one bad amount near the end."""
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
    return frame


def write_file(path: Path, megabytes: int) -> int:
    """A CSV of about ``megabytes`` MB (a Parquet file of the same rows for a ``.parquet`` path: text amounts,
    typed timestamps and quantities, row groups of 250,000 rows); returns the number of rows."""
    frame = make_frame(megabytes)
    if path.suffix == ".parquet":
        frame["timestamp"] = pd.to_datetime(frame["timestamp"])
        frame["quantity"] = frame["quantity"].astype("int64")
        frame.to_parquet(path, index=False, row_group_size=250_000)
    else:
        frame.to_csv(path, index=False)
    return len(frame)


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
    parser.add_argument("--sizes", default="50,200", help="CSV file sizes in MB, comma-separated")
    parser.add_argument("--parquet-sizes", default="200",
                        help="Parquet cases, as the MB of the same rows written as CSV, comma-separated ('' for none)")
    args = parser.parse_args()
    report = []
    with tempfile.TemporaryDirectory(prefix="fedinsight-validate-") as tmp:
        cases = [("csv", int(s)) for s in args.sizes.split(",") if s]
        cases += [("parquet", int(s)) for s in args.parquet_sizes.split(",") if s]
        for kind, mb in cases:
            path = Path(tmp) / f"{kind}{mb}" / f"transactions.{kind}"
            path.parent.mkdir()
            rows = write_file(path, mb)
            size = path.stat().st_size
            streamed_rss, streamed = peak_rss_mb(path, 8 << 20)
            whole_rss, whole = peak_rss_mb(path, 1 << 40)  # one batch larger than any file: the whole read
            if kind == "parquet":
                streamed["problems"], whole["problems"] = sorted(streamed["problems"]), sorted(whole["problems"])
            report.append({"format": kind, "file_mb": round(size / 1e6, 1), "rows": rows,
                           "streamed": {"peak_rss_mb": round(streamed_rss), "seconds": streamed["seconds"]},
                           "whole": {"peak_rss_mb": round(whole_rss), "seconds": whole["seconds"]},
                           "same_problems": streamed["problems"] == whole["problems"],
                           "problems": streamed["problems"]})
            path.unlink()
    print(json.dumps({"load_average_1m": round(os.getloadavg()[0], 1), "runs": report}, indent=2))


if __name__ == "__main__":
    main()

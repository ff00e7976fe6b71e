"""Synthetic generator and validator throughput, measured side by side in one run.

Run: .venv/bin/python benchmarks/synth.py --customers 830000 --out /tmp/synth-bench
(~10 million transactions). Prints JSON: rows written per second, rows validated per second, and the
ratio of validation time to generation time for the same data.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from fedinsight.data.synth import SynthConfig, write_synthetic
from fedinsight.data.validate import validate_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--format", default="parquet", choices=["parquet", "csv"])
    parser.add_argument("--out", type=Path, default=None, help="Output folder (default: a temp folder, removed)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="fedinsight-synth-bench-")) / "data"
    try:
        start = time.perf_counter()
        stats = write_synthetic(
            SynthConfig(customers=args.customers, partners=args.partners, fmt=args.format), out, overwrite=True
        )
        gen_s = time.perf_counter() - start
        start = time.perf_counter()
        files, problems = validate_paths([out])
        val_s = time.perf_counter() - start
        total_rows = sum(stats["rows"].values())
        print(json.dumps({
            "customers": args.customers,
            "partners": args.partners,
            "format": args.format,
            "rows": stats["rows"],
            "generate_s": round(gen_s, 2),
            "generate_rows_per_s": round(total_rows / gen_s),
            "generate_transactions_per_s": round(stats["rows"]["transactions"] / gen_s),
            "validate_s": round(val_s, 2),
            "validate_rows_per_s": round(total_rows / val_s),
            "validate_over_generate": round(val_s / gen_s, 2),
            "files_validated": len(files),
            "problems": len(problems),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }, indent=2))
    finally:
        if args.out is None:
            shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

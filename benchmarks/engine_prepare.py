"""Benchmark: what a partner's engine preparation costs per scan, and the two per-process memos that cut it.

    python benchmarks/engine_prepare.py                     # 2,000 customers as CSV, ~1 min here
    python benchmarks/engine_prepare.py --customers 20000

Writes one synthetic partner as CSV (``data synth``'s generator) and prints one JSON object, figures side by side:

- ``bind_ms``: binding one statement over a view of the partner's transactions file, with DuckDB's auto-detection
  (``auto_detect``: the file is sniffed again at every bind) and with the dialect sniffed once (``sniffed``: what
  the engine registers since the CSV memo); each view the preparation stacks and each scan is one such bind;
- ``scan_s``: ``PartnerView.scan`` of the partner's customer count (registration, PII check, typed views, consent
  and erasure, the query), the first time in this process (``first``: the CSV sniffed and the PII sample checked)
  and again on the unchanged files (``repeat``: both kept; what every later message of a simulation's worker pays).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _bind_ms(engine: object, raw_sql: str, repeats: int) -> float:
    con = engine.con  # type: ignore[attr-defined]
    con.execute(f"CREATE OR REPLACE VIEW bench_raw AS SELECT * FROM {raw_sql}")
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        con.execute(f"CREATE OR REPLACE VIEW bench_{i} AS SELECT customer_id FROM bench_raw")
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from fedinsight.data.synth_base import SynthConfig
    from fedinsight.data.synth_write import write_synthetic
    from fedinsight.partner import view as view_module
    from fedinsight.partner.engine.duckdb_backend import DuckDBEngine, _literal
    from fedinsight.partner.policy_init import init_federation
    from fedinsight.partner.view import CUSTOMER_COUNT, PartnerView

    with tempfile.TemporaryDirectory(prefix="fedinsight-prepare-") as tmp:
        root = Path(tmp) / "partners"
        write_synthetic(SynthConfig(customers=args.customers, partners=1, fmt="csv"), root, finalize=init_federation)
        folder = next(p for p in sorted(root.iterdir()) if (p / "transactions.csv").exists())
        transactions = folder / "transactions.csv"
        engine = DuckDBEngine(Path(tmp) / "spill")
        try:
            auto = f"read_csv({_literal(str(transactions))}, header = true, all_varchar = true)"
            bind = {"auto_detect": _bind_ms(engine, auto, args.repeats),
                    "sniffed": _bind_ms(engine, engine._read_csv(transactions), args.repeats)}
        finally:
            engine.close()
        rows = sum(1 for _ in transactions.open()) - 1
        scans = []
        for _ in range(3):
            view_module._RESULTS.clear()  # the scan-result cache would answer a repeat without preparing anything
            view_module._SIZES.clear()
            t0 = time.perf_counter()
            PartnerView(folder, "analytics").scan(CUSTOMER_COUNT)
            scans.append(time.perf_counter() - t0)
    print(json.dumps({
        "customers": args.customers,
        "transaction_rows": rows,
        "bind_ms": {**bind, "speedup": round(bind["auto_detect"] / max(bind["sniffed"], 1e-6), 1)},
        "scan_s": {"first": round(scans[0], 3), "repeat": round(min(scans[1:]), 3)},
    }, indent=2))


if __name__ == "__main__":
    main()

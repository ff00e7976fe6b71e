"""Uplift's campaign audience on one partner: the pandas path vs the partner's engine, side by side.

    python benchmarks/uplift_engine.py --customers 50000

Writes one synthetic partner (``data synth``'s generator, CSV, ``partner init``'s policy) and runs, each in its
own process so each peak RSS is its own: ``pandas`` (``PartnerView.tables()`` + ``features.audience``, the path
uplift used before) and ``engine`` (``audience_scan.engine_audience``: one DuckDB scan, one row per exposed
customer to pandas). Prints one JSON object: seconds, peak RSS, customers in the audience, whether ids, arms,
conversions, purchase counts and the recency, frequency and tenure features are exactly equal, and the largest
relative difference of the money features (the engine sums money exactly, pandas adds floats row by row: the
synthetic amounts are not whole quarters, so the last bit may differ).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from engine_paths import peak_mb, row_counts, run_child, write_synth_partner

CAMPAIGN, ARMS = "campaign-1", ("A", "B")
FIELDS = ("arm", "converted", "x", "order_value", "spend_year", "orders")


class _EnginePartner:
    """What the engine path asks of a partner: its scans and its tables' columns (no ``data()``)."""

    def __init__(self, view: object) -> None:
        self.view = view

    def scan(self, scan: object) -> object:
        return self.view.scan(scan)  # type: ignore[attr-defined]

    def columns(self) -> dict:
        return self.view.columns()  # type: ignore[attr-defined]


def measure(kind: str, folder: Path, out: Path) -> dict[str, float]:
    from fedinsight.partner.view import PartnerView
    from fedinsight.tasks.uplift.audience_scan import engine_audience
    from fedinsight.tasks.uplift.features import audience

    began = time.perf_counter()
    view = PartnerView(folder, "training")
    if kind == "pandas":
        data = view.tables()
        who = audience(data.events, data.transactions, CAMPAIGN, ARMS)
    else:
        who = engine_audience(_EnginePartner(view), CAMPAIGN, ARMS)  # type: ignore[arg-type]
    seconds = time.perf_counter() - began
    np.savez(out, ids=np.asarray(who.ids, dtype=str), **{f: getattr(who, f) for f in FIELDS})
    return {"seconds": round(seconds, 2), "customers": len(who), "peak_rss_mb": peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--measure", choices=["pandas", "engine"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--npz", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.folder, args.npz)))
        return
    from rich.console import Console

    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shop"
        with console.status(f"writing a partner of {args.customers:,} customers"):
            rows = row_counts(write_synth_partner(folder, args.customers))
        results: dict[str, object] = {"customers": args.customers, "rows": rows}
        for kind in ("pandas", "engine"):
            with console.status(f"measuring the {kind} path"):
                results[kind] = run_child(__file__, kind, "--folder", str(folder), "--npz",
                                          str(Path(tmp) / f"{kind}.npz"))
        a, b = (np.load(Path(tmp) / f"{k}.npz") for k in ("pandas", "engine"))
        exact = [np.array_equal(a[f], b[f]) for f in ("ids", "arm", "converted", "orders")]
        exact.append(np.array_equal(a["x"][:, [0, 1, 4]], b["x"][:, [0, 1, 4]]))  # recency, frequency, tenure
        results["exactly_equal_counts_and_days"] = all(exact)
        money = [(a["x"][:, [2, 3]], b["x"][:, [2, 3]]), (a["order_value"], b["order_value"]),
                 (a["spend_year"], b["spend_year"])]
        results["money_max_relative_difference"] = float(max(
            (np.abs(p - e) / np.maximum(np.abs(p), 1e-300)).max(initial=0.0) for p, e in money))
        pandas, engine = results["pandas"], results["engine"]
        results["engine_speed_vs_pandas"] = round(pandas["seconds"] / engine["seconds"], 2)  # type: ignore[index]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""The recommender's split on one partner: the pandas path vs the partner's engine, side by side.

    python benchmarks/recommend_engine.py --customers 100000

Writes one synthetic partner (``data synth``'s generator, CSV, ``partner init``'s policy) and runs, each in its own
process so each peak RSS is its own: ``pandas`` (``PartnerView.tables()`` + ``leave_latest_out``, the path the
recommender used before) and ``engine`` (``interaction_scan.engine_pairs``: three scans of one preparation, one row
of integers per customer and item to pandas). Both build the validation fold too (``skip_latest=1``), as a job's end
does. Prints one JSON object: seconds, peak RSS, customers in the split, and whether the two splits are exactly equal.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from engine_paths import peak_mb, row_counts, run_child, write_synth_partner

FIELDS = ("train_indptr", "train_items", "test_items")


class _EnginePartner:
    """What the engine path asks of a partner: its scans (no ``data()``)."""

    def __init__(self, view: object) -> None:
        self.view = view

    def scans(self, scans: list) -> list:
        return self.view.scans(scans)  # type: ignore[attr-defined,no-any-return]


def measure(kind: str, folder: Path, catalogue_file: Path, out: Path) -> dict[str, float]:
    from fedinsight.models.ranking import Catalogue, leave_latest_out
    from fedinsight.partner.view import PartnerView
    from fedinsight.tasks.recommend.interaction_scan import engine_pairs

    catalogue = Catalogue.from_ids(json.loads(catalogue_file.read_text()))
    began = time.perf_counter()
    view = PartnerView(folder, "recommendation")
    if kind == "pandas":
        interactions = view.tables().interactions
        split = leave_latest_out(interactions, catalogue)
        fold = leave_latest_out(interactions, catalogue, skip_latest=1)
    else:
        pairs = engine_pairs(_EnginePartner(view), catalogue)  # type: ignore[arg-type]
        split, fold = pairs.split(), pairs.split(skip_latest=1)
    seconds = time.perf_counter() - began
    np.savez(out, ids=np.asarray(split.customer_ids, dtype=str), fold_ids=np.asarray(fold.customer_ids, dtype=str),
             **{f: getattr(split, f) for f in FIELDS}, **{f"fold_{f}": getattr(fold, f) for f in FIELDS})
    return {"seconds": round(seconds, 2), "customers": split.num_customers,
            "training_pairs": int(len(split.train_items)), "peak_rss_mb": peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--measure", choices=["pandas", "engine"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--catalogue", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--npz", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.folder, args.catalogue, args.npz)))
        return
    from rich.console import Console

    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder, catalogue = Path(tmp) / "shop", Path(tmp) / "catalogue.json"
        with console.status(f"writing a partner of {args.customers:,} customers"):
            rows = row_counts(write_synth_partner(folder, args.customers))
            items = pd.read_csv(folder / "interactions.csv", usecols=["item_id"], dtype=str)["item_id"].str.strip()
            catalogue.write_text(json.dumps(sorted(items.dropna().unique().tolist())))
        results: dict[str, object] = {"customers": args.customers, "rows": rows}
        for kind in ("pandas", "engine"):
            with console.status(f"measuring the {kind} path"):
                results[kind] = run_child(__file__, kind, "--folder", str(folder), "--catalogue", str(catalogue),
                                          "--npz", str(Path(tmp) / f"{kind}.npz"))
        a, b = (np.load(Path(tmp) / f"{k}.npz") for k in ("pandas", "engine"))
        results["splits_exactly_equal"] = all(np.array_equal(a[f], b[f]) for f in a.files)
        pandas, engine = results["pandas"], results["engine"]
        results["engine_speed_vs_pandas"] = round(pandas["seconds"] / engine["seconds"], 2)  # type: ignore[index]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""A target list's contact step on one partner: the pandas path it replaced vs the partner's engine.

    python benchmarks/contacts_engine.py --customers 200000

Writes one synthetic partner (``data synth``'s generator, CSV, ``partner init``'s policy) whose order lines also
carry an e-mail (``order_email``: the customer's address with a per-order alias, so the latest one by time is
work), then times the contact step alone, each path and column in its own process so each peak memory is its own
(``VmHWM``, as ``targets_engine.py`` reads it): ``pandas`` (every table loaded whole by the validating reader, the
PII scan over whole tables, the latest value per customer in pandas: ``tests/support/contacts_pandas.py``, the
reference of the equality tests) and ``engine`` (``resolve_contacts``: the engine's PII sample chooses the column,
one window query reads the values). Two columns: the one chosen without ``--contact`` (``customers.email``: one
per customer) and ``--contact order_email`` (2.4 M order lines at 200,000 customers). Prints one JSON object:
seconds and peak RSS per path, the contacts found, whether both paths give the same contacts (the same column,
the same value per customer), and the engine's speed and memory beside the pandas path's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the pandas reference lives with the tests
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the engine benchmarks' shared scaffold

COLUMNS = {"chosen": None, "order_email": "order_email"}


def measure(kind: str, folder: Path, column: str | None, out: Path) -> dict[str, object]:
    from engine_paths import peak_mb
    from support.contacts_pandas import pandas_contacts

    from fedinsight.partner.contacts import resolve_contacts
    from fedinsight.partner.view import PartnerView

    began = time.perf_counter()
    if kind == "pandas":
        source, by_token = pandas_contacts(folder, column)
    else:
        found = resolve_contacts(PartnerView(folder, "training"), column)
        source, by_token = found.source, found.by_token
    seconds = time.perf_counter() - began
    pd.DataFrame({"token": list(by_token), "contact": list(by_token.values())}).sort_values("token").to_parquet(
        out, index=False)
    return {"seconds": round(seconds, 2), "peak_rss_mb": peak_mb(), "source": source, "contacts": len(by_token)}


def child(kind: str, folder: Path, column: str | None, out: Path) -> dict[str, object]:
    from engine_paths import run_child

    return run_child(__file__, kind, "--folder", str(folder), "--out", str(out),
                     *(["--contact", column] if column else []))


def _order_email(tables: dict[str, pd.DataFrame]) -> None:
    """Order lines with an ``order_email``: the customer's address with a per-line alias (``a+1@shop``)."""
    tx = tables["transactions"]
    email = tx["customer_id"].map(dict(zip(tables["customers"]["customer_id"], tables["customers"]["email"],
                                           strict=True)))
    alias = pd.Series(range(len(tx)), index=tx.index).mod(3).astype(str)
    tx["order_email"] = email.str.replace("@", "+", regex=False).str.cat(alias).str.cat(
        email.str.split("@").str[1], sep="@")


def write_partner(folder: Path, customers: int) -> dict[str, int]:
    """The partner's CSV files (order lines with an ``order_email``) and its policy."""
    from engine_paths import row_counts, write_synth_partner

    return row_counts(write_synth_partner(folder, customers, _order_email))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--measure", choices=["pandas", "engine"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--contact", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.folder, args.contact, args.out)))
        return
    from rich.console import Console

    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shop"
        with console.status(f"writing a partner of {args.customers:,} customers"):
            rows = write_partner(folder, args.customers)
        results: dict[str, object] = {"customers": args.customers, "rows": rows}
        for name, column in COLUMNS.items():
            step: dict[str, object] = {}
            for kind in ("pandas", "engine"):
                with console.status(f"measuring the {kind} path ({name})"):
                    step[kind] = child(kind, folder, column, Path(tmp) / f"{name}-{kind}.parquet")
            a, b = (pd.read_parquet(Path(tmp) / f"{name}-{k}.parquet") for k in ("pandas", "engine"))
            pandas, engine = step["pandas"], step["engine"]
            step["same_contacts"] = pandas["source"] == engine["source"] and a.equals(b)  # type: ignore[index]
            step["engine_speed_vs_pandas"] = round(pandas["seconds"] / engine["seconds"], 2)  # type: ignore[index]
            step["engine_memory_vs_pandas"] = round(engine["peak_rss_mb"] / pandas["peak_rss_mb"], 3)  # type: ignore[index]
            results[name] = step
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

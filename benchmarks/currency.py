"""Amounts in one reporting currency: how wrong the mixed sum is, and what converting on every read costs.

Run: .venv/bin/python benchmarks/currency.py --customers 5000
Writes two partners' own exports (a CNY retailer in GB18030 and a USD Shopify-style shop; the test suite's
generator, tests/support/exports.py), then reads each through its data view without a rate table and with
``--currency USD --rates CNY=0.138``: the pooled revenue both ways (the mixed sum adds yuan to dollars), and the
time of one ``PartnerView.tables()`` read (protected tables cached, as on a SuperNode) with and without the
conversion. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the export generator lives with the tests

from support.exports import write_raw_federation  # noqa: E402

from fedinsight.data.currency import RateTable  # noqa: E402
from fedinsight.partner.policy_init import init_partner  # noqa: E402
from fedinsight.partner.view import PartnerView  # noqa: E402


def _read_s(view: PartnerView, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        view.tables()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=0.138, help="USD per CNY.")
    parser.add_argument("--repeat", type=int, default=7, help="Reads per variant; the median is reported.")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedinsight-currency-bench-"))
    try:
        exports = write_raw_federation(root, customers=args.customers)
        table = RateTable.of("USD", f"CNY={args.rate}")
        result: dict[str, object] = {"customers_per_partner": args.customers, "rate_usd_per_cny": args.rate}
        mixed = converted = 0.0
        for name, export in exports.items():
            init_partner(export.folder)
            raw_view = PartnerView(export.folder, "analytics")
            usd_view = PartnerView(export.folder, "analytics", rates=table)
            raw, usd = raw_view.tables(), usd_view.tables()  # the first read fills the cache
            mixed += float(raw.transactions["amount"].sum())
            converted += float(usd.transactions["amount"].sum())
            result[name] = {
                "declared": raw.meta["currency"], "orders": len(raw.transactions),
                "revenue_as_held": round(float(raw.transactions["amount"].sum()), 2),
                "revenue_usd": round(float(usd.transactions["amount"].sum()), 2),
                "read_s_without_table": round(_read_s(raw_view, args.repeat), 4),
                "read_s_with_table": round(_read_s(usd_view, args.repeat), 4),
            }
        result["pooled_revenue_mixed"] = round(mixed, 2)
        result["pooled_revenue_usd"] = round(converted, 2)
        result["mixed_over_usd"] = round(mixed / converted, 3) if converted else None
        print(json.dumps(result, ensure_ascii=False, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

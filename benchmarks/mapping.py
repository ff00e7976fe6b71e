"""Reading a partner's own exports through its mapping.toml, against reading the same tables as canonical files.

Run: .venv/bin/python benchmarks/mapping.py --customers 50000
Writes a Chinese retailer's exports (GB18030 order lines, 会员信息, 营销活动日志; the test suite's generator,
tests/support/exports.py) and the same data as canonical CSV files, then times: the mapped read (decode,
¥ amounts, Beijing time to UTC, order lines grouped into orders, value maps, validation), the canonical read,
and `partner map --suggest`'s draft. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the export generator lives with the tests

from support.exports import write_cn_export  # noqa: E402

from fedinsight.data.federation import load_partner_folder  # noqa: E402
from fedinsight.data.suggest import suggest_mapping  # noqa: E402


def _timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="Reads per variant; the fastest is reported.")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedinsight-mapping-bench-"))
    try:
        export = write_cn_export(root / "mapped", customers=args.customers)
        lines = sum(len((export.folder / f).read_text(encoding="gb18030").splitlines()) - 1
                    for f in export.files["transactions"])
        canonical = root / "canonical"
        canonical.mkdir()
        for name, frame in export.expected.items():
            frame.to_csv(canonical / f"{name}.csv", index=False)
        mapped_s = min(_timed(lambda: load_partner_folder(export.folder))[1] for _ in range(args.repeat))
        canonical_s = min(_timed(lambda: load_partner_folder(canonical))[1] for _ in range(args.repeat))
        (export.folder / "mapping.toml").unlink()
        draft, suggest_s = _timed(lambda: suggest_mapping(export.folder))
        print(json.dumps({
            "customers": args.customers,
            "order_lines": lines,
            "orders": len(export.expected["transactions"]),
            "events": len(export.expected["events"]),
            "mapped_read_s": round(mapped_s, 3),
            "mapped_order_lines_per_s": round(lines / mapped_s),
            "canonical_read_s": round(canonical_s, 3),
            "mapped_over_canonical": round(mapped_s / canonical_s, 2),
            "suggest_s": round(suggest_s, 3),
            "suggested_tables": sorted(draft.tables),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

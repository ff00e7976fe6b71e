"""Partner-side scale: the engine's scans vs the same query written directly in DuckDB SQL vs today's pandas path.

    python benchmarks/scale.py --rows 10000000            # a few minutes here
    python benchmarks/scale.py --rows 100000000 --pandas-max-rows 10000000

Writes ``--rows`` transactions of ``--rows / 20`` customers as Parquet in chunks (never all in memory): a lake
folder (``transactions/part-K.parquet``, the engine's input) and, up to ``--pandas-max-rows``, one flat
``transactions.parquet`` (the pandas path reads files, not directories). Each measurement runs in its own
process so its peak RSS is its own, and prints one JSON object with the figures side by side:

- ``engine_scan``: ``PartnerView.scan`` of the insights' per-customer aggregates, end to end (registration,
  PII check on a sample, consent and erasure as a semi-join, the query, tokenizing the per-customer result);
- ``engine_query``: the same scan's query alone on the prepared, protected relations;
- ``direct_duckdb``: the same aggregates written directly in DuckDB SQL on ``read_parquet`` (no views, no
  consent join, float sums): the physical limit the engine is held against (goal: engine >= 0.5x its speed);
- ``propensity_scan``: the propensity features' scan, end to end;
- ``recommend_split``: the recommender's split from the engine's integer pairs (a ``data synth`` folder given by
  ``--data``: it has the interactions and items tables): ``scan_seconds`` the three scans, ``seconds`` with the
  split built;
- ``paired``: ``engine_query``, ``direct_duckdb`` and the direct query giving the engine scan's whole result
  (:func:`direct_same_sql`: every customer, zeros included, and the events' funnel flags; still no consent, no
  trimming, float sums) alternately in one process, best of 3 each (the machine is shared: separate processes
  see different loads); ``engine_speed_vs_direct_duckdb`` and ``..._same_result`` come from here;
- ``pandas``: today's path, ``PartnerView.tables()`` + ``customer_features`` (only up to ``--pandas-max-rows``);
- ``imports``: the same modules imported, nothing computed (every peak RSS includes this floor: torch, flwr ...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import Progress

AS_OF = "2026-01-01"
START = pd.Timestamp("2023-01-01")
SPAN_SECONDS = int((pd.Timestamp(AS_OF) - START).total_seconds())


def write_data(root: Path, rows: int, chunk: int, flat_max: int, seed: int = 0) -> dict[str, Path]:
    """Customers (CSV) and transactions (Parquet chunks; a flat copy when small enough) with shared keys."""
    rng = np.random.default_rng(seed)
    customers = max(rows // 20, 100)
    lake, flat = root / "lake", root / "flat"
    (lake / "transactions").mkdir(parents=True)
    ids = np.array([f"C{i:08d}" for i in range(customers)], dtype=object)
    consent = np.where(rng.random(customers) < 0.95, "yes", "no")
    frame = pd.DataFrame({"customer_id": ids, "consent": consent})
    frame.to_csv(lake / "customers.csv", index=False)
    writer = None
    if rows <= flat_max:
        flat.mkdir()
        frame.to_csv(flat / "customers.csv", index=False)
    schema = pa.schema([("customer_id", pa.string()), ("timestamp", pa.timestamp("s")), ("amount", pa.float64()),
                        ("quantity", pa.int64())])
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("writing transactions", total=rows)
        for k, begin in enumerate(range(0, rows, chunk)):
            n = min(chunk, rows - begin)
            who = ids[rng.integers(0, customers, n)]
            table = pa.table({"customer_id": pa.array(who, pa.string()),
                              "timestamp": pa.array(START.to_datetime64().astype("datetime64[s]")
                                                    + rng.integers(0, SPAN_SECONDS, n).astype("timedelta64[s]")),
                              "amount": rng.integers(1, 40_000, n) / 4.0,
                              "quantity": rng.integers(1, 5, n)}, schema=schema)
            pq.write_table(table, lake / "transactions" / f"part-{k:05d}.parquet")
            if rows <= flat_max:
                writer = writer or pq.ParquetWriter(flat / "transactions.parquet", schema)
                writer.write_table(table)
            progress.advance(task, n)
    if writer is not None:
        writer.close()
    return {"lake": lake, "flat": flat}


REPEATS = 3


def direct_sql(folder: str) -> str:
    """The insights' per-customer aggregates written directly in DuckDB SQL on the Parquet files (float sums, no
    views, no consent join): what the engine is held against."""
    flat = Path(folder) / "transactions.parquet"  # one file (``data synth``) or a directory of chunks
    pattern = str(flat if flat.is_file() else Path(folder) / "transactions" / "**" / "*.parquet")
    recent = ", ".join(f"COUNT(*) FILTER (WHERE timestamp >= TIMESTAMP '{AS_OF}' - INTERVAL {d} DAY) AS r{d}"
                       for d in (30, 90, 365))
    return (f"SELECT customer_id, COUNT(*) AS purchases, "
            f"COUNT(*) FILTER (WHERE timestamp >= TIMESTAMP '{AS_OF}' - INTERVAL 365 DAY) AS f_window, "
            f"SUM(amount) FILTER (WHERE timestamp >= TIMESTAMP '{AS_OF}' - INTERVAL 365 DAY) AS spend_now, "
            f"SUM(amount) FILTER (WHERE timestamp < TIMESTAMP '{AS_OF}' - INTERVAL 365 DAY "
            f"AND timestamp >= TIMESTAMP '{AS_OF}' - INTERVAL 730 DAY) AS spend_prev, {recent} "
            f"FROM read_parquet('{pattern}') WHERE timestamp < TIMESTAMP '{AS_OF}' GROUP BY customer_id")


def direct_same_sql(folder: str) -> str:
    """The engine scan's *result* written directly in DuckDB SQL on the files: every customer of the customers
    file (zeros for those without purchases), the same transaction aggregates (float sums) and the funnel
    awareness/interest from the events file when there is one -- but no consent, no erasure, no trimming, no
    exact money. The fair "same query" for ``engine_speed_vs_direct_duckdb_same_result``; :func:`direct_sql` (the
    transaction aggregates alone, only customers with purchases) is kept for comparison with earlier runs."""
    root = Path(folder)

    def source(name: str) -> str:
        flat = root / f"{name}.parquet"
        if flat.is_file():
            return f"read_parquet('{flat}')"
        if (root / name).is_dir():
            return f"read_parquet('{root / name / '**' / '*.parquet'}')"
        return f"read_csv('{root / (name + '.csv')}', header = true, all_varchar = true)"

    events = (root / "events.parquet").is_file() or (root / "events").is_dir()
    e_cte = (f", e AS (SELECT customer_id, COUNT(*) AS aware, COUNT(*) FILTER (WHERE stage <> 'exposure') AS "
             f"interested FROM {source('events')} WHERE timestamp < TIMESTAMP '{AS_OF}' AND stage IN ('exposure', "
             "'click', 'participate', 'convert') GROUP BY customer_id)") if events else ""
    e_cols = ", COALESCE(e.aware, 0) AS aware, COALESCE(e.interested, 0) AS interested" if events else ""
    e_join = " LEFT JOIN e ON c.customer_id = e.customer_id" if events else ""
    return (f"WITH t AS ({direct_sql(folder)}){e_cte} SELECT c.customer_id, COALESCE(t.purchases, 0) AS purchases, "
            "COALESCE(t.f_window, 0) AS f_window, COALESCE(t.spend_now, 0) AS spend_now, "
            "COALESCE(t.spend_prev, 0) AS spend_prev, COALESCE(t.r30, 0) AS r30, COALESCE(t.r90, 0) AS r90, "
            f"COALESCE(t.r365, 0) AS r365{e_cols} FROM {source('customers')} AS c "
            f"LEFT JOIN t ON c.customer_id = t.customer_id{e_join}")


def measure(kind: str, folder: str, memory: str) -> dict[str, float]:
    """One measurement in this process (run by the parent in a child of its own)."""
    from fedinsight.partner.engine import EngineSettings
    from fedinsight.partner.engine.relations import prepare
    from fedinsight.partner.engine.settings import open_engine
    from fedinsight.partner.view import PartnerView
    from fedinsight.privacy.consent import erasure_register
    from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features
    from fedinsight.tasks.insights.customer_scan import customer_scan
    from fedinsight.tasks.propensity.customer_scan import customer_scan as propensity_scan
    from fedinsight.tasks.propensity.customer_scan import table_from_scan
    from fedinsight.tasks.propensity.features import LabelWindow, unit_features

    rules = FeatureRules(as_of=AS_OF, window_days=365)
    settings = EngineSettings(engine=os.environ.get("SCALE_ENGINE", "duckdb"), memory=memory,
                              spark_master="local[2]")
    view = PartnerView(folder, "analytics", engine=settings)
    start = time.perf_counter()
    out: dict[str, float] = {}
    if kind == "engine_scan":
        if settings.engine == "spark":  # the first scan starts the JVM and generates code: timed apart
            view.scan(customer_scan(rules))
            out["first_scan_seconds"] = round(time.perf_counter() - start, 3)
            start = time.perf_counter()
        out["customers_out"] = len(view.scan(customer_scan(rules)))
    elif kind == "insights_batch":  # the preset batch's exact aggregates, every query, as a partner computes them
        from fedinsight.tasks.insights.aggregates import compute
        from fedinsight.tasks.insights.catalogue import PRESETS, default_queries
        from fedinsight.tasks.insights.engine_features import engine_features

        preset = PRESETS["synthetic"]
        queries = [{"kind": q.kind, "params": q.params()} for q in default_queries(
            channels=preset["channels"], campaigns=preset["campaigns"], tx_channels=preset["tx_channels"])]
        features = engine_features(_EnginePartner(view), rules, queries)
        out["scans_seconds"] = round(time.perf_counter() - start, 3)
        aggs = [compute(q["kind"], features, q["params"]) for q in queries]
        out["queries"] = len(aggs)
        out["customers_out"] = features.n
        out["event_rows"] = len(features.events.cust)
        out["transaction_rows"] = len(features.transactions.cust)
    elif kind == "propensity_scan":
        window = LabelWindow(pd.Timestamp("2023-01-01"), pd.Timestamp("2025-01-01"), pd.Timestamp(AS_OF))
        frame = PartnerView(folder, "training", engine=settings).scan(propensity_scan(window))
        out["scan_seconds"] = round(time.perf_counter() - start, 3)
        table = table_from_scan(frame, window)  # the features the client trains on (tasks/propensity/client.py)
        out["customers_out"] = len(unit_features(table, window))
    elif kind == "recommend_split" and not (Path(folder) / "items.parquet").exists():
        out["skipped"] = "no items.parquet (a data synth folder has one)"  # type: ignore[assignment]
    elif kind == "recommend_split":  # the recommender's split from the engine's integer pairs (issue 17)
        from fedinsight.models.ranking import Catalogue
        from fedinsight.tasks.recommend.interaction_scan import engine_pairs

        items = pd.read_parquet(Path(folder) / "items.parquet", columns=["item_id"])["item_id"].astype(str)
        catalogue = Catalogue.from_ids(sorted(items.str.strip().unique()))
        pairs = engine_pairs(PartnerView(folder, "recommendation", engine=settings), catalogue)  # type: ignore[arg-type]
        out["scan_seconds"] = round(time.perf_counter() - start, 3)
        split = pairs.split()
        out["customers_out"] = split.num_customers
        out["pairs"] = len(pairs.codes)
    elif kind == "engine_query":
        view.check_types()  # as a job's hello does first (it finds ids needing no trim: the views then skip it)
        with open_engine(settings, Path(folder) / ".fedinsight" / "engine-tmp" / "bench") as engine:
            prepare(engine, view.sources(), view.policy, "analytics", erasure_register(view.policy.register_url))
            start = time.perf_counter()
            out["customers_out"] = len(engine.query(customer_scan(rules).sql))
    elif kind == "direct_duckdb":
        import duckdb

        con = duckdb.connect(config={"memory_limit": memory} if memory else {})
        out["customers_out"] = len(con.sql(direct_sql(folder)).to_arrow_table())
    elif kind == "paired":  # engine query and direct SQL alternately in one process: the machine's load is shared
        import duckdb

        con = duckdb.connect(config={"memory_limit": memory} if memory else {})
        view.check_types()  # as a job's hello does first (it finds ids needing no trim: the views then skip it)
        with open_engine(settings, Path(folder) / ".fedinsight" / "engine-tmp" / "bench") as engine:
            prepare(engine, view.sources(), view.policy, "analytics", erasure_register(view.policy.register_url))
            engine_times, direct_times, same_times = [], [], []
            for _ in range(int(os.environ.get("SCALE_REPEATS", REPEATS))):
                t = time.perf_counter()
                engine.query(customer_scan(rules).sql)
                engine_times.append(time.perf_counter() - t)
                t = time.perf_counter()
                con.sql(direct_sql(folder)).to_arrow_table()
                direct_times.append(time.perf_counter() - t)
                t = time.perf_counter()
                con.sql(direct_same_sql(folder)).to_arrow_table()
                same_times.append(time.perf_counter() - t)
        out["engine_query_best_seconds"] = round(min(engine_times), 3)
        out["direct_duckdb_best_seconds"] = round(min(direct_times), 3)
        out["direct_duckdb_same_result_best_seconds"] = round(min(same_times), 3)
        out["engine_speed_vs_direct_duckdb"] = round(min(direct_times) / min(engine_times), 2)
        out["engine_speed_vs_direct_duckdb_same_result"] = round(min(same_times) / min(engine_times), 2)
    elif kind == "imports":  # the same modules, nothing computed: the floor every peak RSS includes
        out["customers_out"] = 0
    elif kind == "pandas":
        out["customers_out"] = customer_features(view.tables(), rules).n
    out["seconds"] = round(time.perf_counter() - start, 3)
    return out


class _EnginePartner:
    """What the insights client asks of a partner, answered by the view's engine alone."""

    def __init__(self, view: object) -> None:
        self.view = view

    def scans(self, scans: list) -> list:
        return self.view.scans(scans)  # type: ignore[attr-defined]

    def timezone(self) -> str:
        return self.view.timezone  # type: ignore[attr-defined]


def child(kind: str, folder: Path, memory: str) -> dict[str, float]:
    """Run :func:`measure` in a child process; its own peak RSS from ``wait4``."""
    proc = subprocess.Popen([sys.executable, __file__, "--measure", kind, "--folder", str(folder),
                             "--memory", memory], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed (exit {proc.returncode})")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    return result


def _ratio(results: dict, key: str = "engine_speed_vs_direct_duckdb") -> float | None:
    return results.get("paired", {}).get(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--pandas-max-rows", type=int, default=10_000_000)
    parser.add_argument("--memory", default="4GB", help="the engine's memory limit (node config engine-memory)")
    parser.add_argument("--out", type=Path, default=None, help="keep the data here (default: a temp folder)")
    parser.add_argument("--data", type=Path, default=None,
                        help="measure this partner folder (e.g. one written by `fedinsight data synth --partners 1 "
                             "--start 2022-09-01`) instead of writing one; the pandas path then reads --pandas-data")
    parser.add_argument("--pandas-data", type=Path, default=None,
                        help="with --data: the folder the pandas path is measured on (it is measured at 10 M rows)")
    parser.add_argument("--kinds", default="", help="comma-separated measurements (default: all)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="paired: alternations (best of)")
    parser.add_argument("--engine", default="duckdb", help="the partner's engine: duckdb or spark (local[2])")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.folder, args.memory)))
        return
    os.environ["SCALE_REPEATS"] = str(args.repeats)  # the children read them
    os.environ["SCALE_ENGINE"] = args.engine
    kinds = args.kinds.split(",") if args.kinds else ["imports", "direct_duckdb", "engine_query", "engine_scan",
                                                          "insights_batch", "propensity_scan", "paired"]
    if args.data is not None:
        sizes = {t: pq.ParquetFile(args.data / f"{t}.parquet").metadata.num_rows for t in ("customers", "transactions")
                 if (args.data / f"{t}.parquet").is_file()}
        results = {}
        for kind in kinds:
            results[kind] = child(kind, args.data, args.memory)
            Console(stderr=True).print(f"{kind}: {results[kind]}")
        if args.pandas_data is not None:
            results["pandas"] = child("pandas", args.pandas_data, args.memory)
            results["pandas"]["rows"] = pq.ParquetFile(args.pandas_data / "transactions.parquet").metadata.num_rows
        print(json.dumps({"rows": sizes.get("transactions"), "customers": sizes.get("customers"),
                          "data": str(args.data), "engine_memory": args.memory, **results,
                          "engine_speed_vs_direct_duckdb": _ratio(results),
                          "engine_speed_vs_direct_duckdb_same_result": _ratio(
                              results, "engine_speed_vs_direct_duckdb_same_result"),
                          "cores": os.cpu_count()}, indent=2))
        return
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fedinsight-scale-"))
    try:
        t = time.perf_counter()
        folders = write_data(root, args.rows, args.chunk, args.pandas_max_rows)
        written = round(time.perf_counter() - t, 1)
        results = {kind: child(kind, folders["lake"], args.memory) for kind in kinds}
        if folders["flat"].is_dir():
            shutil.copytree(folders["lake"] / ".fedinsight", folders["flat"] / ".fedinsight")  # the same keys
            results["pandas"] = child("pandas", folders["flat"], args.memory)
        print(json.dumps({"rows": args.rows, "customers": max(args.rows // 20, 100), "engine_memory": args.memory,
                          "write_seconds": written, **results,
                          "engine_speed_vs_direct_duckdb": _ratio(results),
                          "engine_speed_vs_direct_duckdb_same_result": _ratio(
                              results, "engine_speed_vs_direct_duckdb_same_result"),
                          "cores": os.cpu_count()}, indent=2))
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

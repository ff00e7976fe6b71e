"""Writing a synthetic federation chunk by chunk: one Parquet (or CSV) writer per partner and table, all or nothing.

Why a module of its own: memory stays bounded by ``chunk_customers`` whatever the total size, because each chunk of
per-partner tables (:mod:`fedinsight.data.synth_partition`) is appended to its open writer and dropped; the folder
appears only once complete (``atomic_output_dir``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fedinsight.core.files import atomic_output_dir
from fedinsight.data.schema import TABLES
from fedinsight.data.synth_base import SEGMENTS, SynthConfig, make_plan
from fedinsight.data.synth_partition import chunks
from fedinsight.data.synth_truth import ground_truth


class _Writers:
    """One lazily opened writer per (partner, table); an empty table is never written."""

    def __init__(self, root: Path, fmt: str, stack: ExitStack) -> None:
        self.root, self.fmt, self.stack = root, fmt, stack
        self.writers: dict[tuple[str, str], Any] = {}

    def write(self, partner: str, name: str, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.fmt == "csv":
            table = _for_csv(table)
        key = (partner, name)
        writer = self.writers.get(key)
        if writer is None:
            folder = self.root / partner
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}.{self.fmt}"
            if self.fmt == "csv":
                import pyarrow.csv as pcsv

                writer = pcsv.CSVWriter(str(path), table.schema, write_options=_csv_options())
            else:
                import pyarrow.parquet as pq

                writer = pq.ParquetWriter(str(path), table.schema)
            self.stack.callback(writer.close)
            self.writers[key] = writer
        writer.write_table(table)


def _csv_options() -> Any:
    import pyarrow.csv as pcsv

    return pcsv.WriteOptions(quoting_style="needed")


def _for_csv(table: pa.Table) -> pa.Table:
    """Whole-second time stamps print as ``2024-03-05 14:07:31`` instead of with microseconds."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.timestamp("s")))
    return table


def write_synthetic(
    config: SynthConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    finalize: Callable[[Path], object] | None = None,
) -> dict:
    """Write the partner folders and the ground truth under ``out`` (all or nothing).

    ``finalize(folder)`` runs on the complete folder before it is moved into place (the CLI uses it to
    write each partner's protection policy), so a failure there also leaves nothing behind.

    Returns stats: ``rows`` (per table, summed over partners; items counts each partner's copy),
    ``seconds``, ``rows_per_s`` (transactions per second), ``customers``, ``partners``, ``out``.
    ``progress(done_customers, total_customers)`` is called after each chunk.
    """
    t0 = time.perf_counter()
    plan = make_plan(config)
    out = Path(out)
    rows: dict[str, dict[str, int]] = {p: dict.fromkeys(TABLES, 0) for p in plan.partner_names}
    seg_counts = np.zeros(len(SEGMENTS), dtype=np.int64)
    with atomic_output_dir(out, overwrite=overwrite) as tmp, ExitStack() as stack:
        import pyarrow.parquet as pq

        writers = _Writers(tmp, config.fmt, stack)
        for partner in plan.partner_names:
            writers.write(partner, "items", plan.items)
            rows[partner]["items"] = plan.items.num_rows
        truth_dir = tmp / "ground_truth"
        truth_dir.mkdir()
        truth_writer: pq.ParquetWriter | None = None
        for chunk in chunks(plan):
            for name, tables in chunk.per_partner.items():
                for partner, table in zip(plan.partner_names, tables, strict=True):
                    writers.write(partner, name, table)
                    rows[partner][name] += table.num_rows
            if truth_writer is None:
                truth_writer = pq.ParquetWriter(str(truth_dir / "customer_truth.parquet"), chunk.truth.schema)
                stack.callback(truth_writer.close)
            truth_writer.write_table(chunk.truth)
            seg = chunk.truth.column("segment").to_numpy(zero_copy_only=False)
            seg_counts += np.array([(seg == s).sum() for s in SEGMENTS])
            if progress is not None:
                progress(chunk.done, config.customers)
        truth = ground_truth(plan, rows, seg_counts)
        (tmp / "ground_truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
        stack.close()  # flush every writer before the folder is moved into place
        if finalize is not None:
            finalize(tmp)
    seconds = time.perf_counter() - t0
    n_tx = truth["rows"]["transactions"]
    return {
        "rows": truth["rows"],
        "seconds": round(seconds, 3),
        "rows_per_s": round(n_tx / seconds, 1) if seconds > 0 else float("inf"),
        "customers": config.customers,
        "partners": config.partners,
        "out": str(out),
    }

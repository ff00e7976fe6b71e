"""``data validate`` streams a CSV larger than one batch: the same problems as a whole read, with file lines.

The batch size is made small (16 KiB) so a ~200 KB file is read in a dozen batches; the planted problems sit
deep inside, in different batches, after a quoted line break that shifts every later line by one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fedinsight.core.errors import Problem
from fedinsight.data.schema import TABLES
from fedinsight.data.stream import merge_problems, needs_line_scan
from fedinsight.data.validate import stream_check, validate_paths

NOW = pd.Timestamp("2026-01-01")
ROWS = 5000
BLOCK = 16 << 10


def _write(path: Path, *, quoted_break: bool) -> dict[str, int]:
    """A transactions file; returns the file line of each planted problem."""
    lines = ["transaction_id,customer_id,timestamp,amount,quantity,note"]
    planted: dict[str, int] = {}
    for k in range(ROWS):
        note = '"two\nlines"' if quoted_break and k == 7 else "plain"
        amount = "12.50"
        tid = f"t{k}"
        if k == 4200:
            amount = "twelve"  # bad value deep inside
        if k == 3100:
            tid = "t40"  # repeats row 40's id, about ten batches later
        lines.append(f"{tid},c{k % 97},2025-03-{1 + k % 28:02d} 10:00,{amount},{1 + k % 3},{note}")
        row_line = len("\n".join(lines).splitlines())  # the record's last line
        if k == 4200:
            planted["amount"] = row_line
        if k == 3100:
            planted["duplicate"] = row_line
    path.write_text("\n".join(lines) + "\n")
    return planted


def test_a_bad_value_deep_in_a_large_file_is_named_with_its_real_line(tmp_path):
    data = tmp_path / "partner"
    data.mkdir()
    planted = _write(data / "transactions.csv", quoted_break=True)
    assert (data / "transactions.csv").stat().st_size > 10 * BLOCK  # a dozen batches
    assert needs_line_scan(data / "transactions.csv")

    _, problems = validate_paths([data], now=NOW, block_bytes=BLOCK)
    text = [str(p) for p in problems]
    assert any("column 'amount': expected a number" in t and f"(lines {planted['amount']})" in t
               and "'twelve'" in t for t in text), text
    assert any("duplicate key" in t and f"(lines {planted['duplicate']})" in t and "'t40'" in t for t in text), text
    # the quoted line break shifted everything after it by one line: line = row + 2 + 1
    assert planted["amount"] == 4200 + 3
    assert len(problems) == 2

    # exactly what the whole-file read reports
    _, whole = validate_paths([data], now=NOW, block_bytes=1 << 30)
    assert problems == whole


def test_a_plain_file_numbers_lines_without_a_scan_and_a_clean_file_passes(tmp_path):
    planted = _write(tmp_path / "transactions.csv", quoted_break=False)
    assert not needs_line_scan(tmp_path / "transactions.csv")
    problems = stream_check(tmp_path / "transactions.csv", TABLES["transactions"], now=NOW, block_bytes=BLOCK)
    assert [p.column for p in problems] == ["amount", "transaction_id"]
    assert f"(lines {planted['amount']})" in problems[0].message and planted["amount"] == 4200 + 2

    clean = tmp_path / "clean" / "transactions.csv"
    clean.parent.mkdir()
    clean.write_text((tmp_path / "transactions.csv").read_text().replace("twelve", "12").replace("t40,", "tX,", 1))
    assert stream_check(clean, TABLES["transactions"], now=NOW, block_bytes=BLOCK) == []


def test_findings_of_several_batches_merge_into_one_problem():
    parts = [Problem("f.csv", "negative value (must be >= 0) in 2 row(s) (lines 5, 9)", column="amount",
                     values=("-1",)),
             Problem("f.csv", "required column is missing (table 'transactions' needs ...)", column="quantity"),
             Problem("f.csv", "negative value (must be >= 0) in 12 row(s) (lines 30, 31, 32, 33, 34, 35, 36, 37, 38, "
                     "39 and 2 more)", column="amount", values=("-1", "-2")),
             Problem("f.csv", "required column is missing (table 'transactions' needs ...)", column="quantity")]
    merged = merge_problems(parts)
    assert len(merged) == 2
    assert merged[0].message == "negative value (must be >= 0) in 14 row(s) (lines 5, 9, 30, 31, 32, 33, 34, 35, " \
                                "36, 37 and 4 more)"
    assert merged[0].values == ("-1", "-2") and merged[1].column == "quantity"


def _write_parquet(path: Path) -> None:
    """5,000 transactions in ten row groups of 500; amounts stored as text (a partner's export may), with a bad
    amount at row 4201, a quantity beyond int64 at row 2602 and row 3101 repeating row 41's id."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    k = np.arange(ROWS)
    amount = np.full(ROWS, "12.50", dtype=object)
    amount[4200] = "twelve"
    quantity = (1 + k % 3).astype(np.uint64)
    quantity[2601] = np.iinfo(np.uint64).max
    tid = np.char.add("t", k.astype(str)).astype(object)
    tid[3100] = "t40"
    table = pa.table({"transaction_id": tid, "customer_id": np.char.add("c", (k % 97).astype(str)),
                      "timestamp": pd.Timestamp("2025-03-01") + pd.to_timedelta(k % 28, unit="D"),
                      "amount": amount, "quantity": pa.array(quantity, pa.uint64())})
    pq.write_table(table, path, row_group_size=500)


def test_a_bad_value_deep_in_a_multi_row_group_parquet_file_is_named_with_its_row(tmp_path):
    import pyarrow.parquet as pq

    from fedinsight.data.stream import parquet_data_bytes

    data = tmp_path / "partner"
    data.mkdir()
    path = data / "transactions.parquet"
    _write_parquet(path)
    assert pq.ParquetFile(path).metadata.num_row_groups == 10
    block = 8 << 10  # a few hundred rows per batch: a couple of dozen batches
    assert parquet_data_bytes(path) > 5 * block  # so validate_paths streams it

    _, problems = validate_paths([data], now=NOW, block_bytes=block)
    text = [str(p) for p in problems]
    assert any("column 'amount': expected a number" in t and "(rows 4201)" in t and "'twelve'" in t
               for t in text), text
    assert any("column 'quantity'" in t and "(rows 2602)" in t for t in text), text
    assert any("duplicate key" in t and "(rows 3101)" in t and "'t40'" in t for t in text), text
    assert len(problems) == 3
    _, whole = validate_paths([data], now=NOW, block_bytes=1 << 30)  # what a whole read reports (in batch order)
    assert sorted(problems, key=str) == sorted(whole, key=str)

    clean = tmp_path / "clean"
    clean.mkdir()
    frame = pq.read_table(path).to_pandas()
    frame.loc[4200, "amount"], frame.loc[2601, "quantity"], frame.loc[3100, "transaction_id"] = "12", 1, "tX"
    frame.to_parquet(clean / "transactions.parquet", row_group_size=500)
    assert stream_check(clean / "transactions.parquet", TABLES["transactions"], now=NOW, block_bytes=block) == []


def test_a_corrupt_parquet_file_is_one_clear_problem_when_streamed(tmp_path):
    path = tmp_path / "transactions.parquet"
    path.write_bytes(b"PAR1" + b"\0" * 100 + b"PAR1")
    problems = stream_check(path, TABLES["transactions"], now=NOW, block_bytes=BLOCK)
    assert len(problems) == 1 and problems[0].message.startswith("not a readable Parquet file (")
    _, whole = validate_paths([path], now=NOW)  # the whole read says the same
    assert [p.message for p in whole] == [problems[0].message]


def _write_mapped(folder: Path) -> dict[str, int]:
    """A partner's own export (German column names, decimal comma, ';'), split over two monthly files, plus a
    small customers table; returns the file line of each planted problem in the second file."""
    folder.mkdir()
    (folder / "kunden.csv").write_text("Kunde\n" + "".join(f"k{i}\n" for i in range(90)), encoding="utf-8")
    planted = {}
    for month in (1, 2):
        lines = ["Beleg;Kunde;Datum;Betrag;Menge"]
        for k in range(ROWS // 2):
            amount, customer, tid = "1.204,50 €", f"k{k % 90}", f"b{month}-{k}"
            if month == 2 and k == 2000:
                amount = "zwölf"
                planted["amount"] = len(lines) + 1
            if month == 2 and k == 1500:
                tid = "b1-40"  # repeats a row of the first file
                planted["duplicate"] = len(lines) + 1
            lines.append(f"{tid};{customer};2024-0{month}-{1 + k % 28:02d} 10:00;{amount};{1 + k % 3}")
        (folder / f"umsatz_2024-0{month}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "mapping.toml").write_text(
        'timezone = "Europe/Berlin"\ncurrency = "EUR"\ndecimal = ","\n'
        '[tables.transactions]\nfiles = ["umsatz_*.csv"]\ndelimiter = ";"\n[tables.transactions.columns]\n'
        'transaction_id = "Beleg"\ncustomer_id = "Kunde"\ntimestamp = "Datum"\namount = "Betrag"\nquantity = "Menge"\n'
        '[tables.customers]\nfiles = ["kunden.csv"]\n[tables.customers.columns]\ncustomer_id = "Kunde"\n')
    return planted


def test_a_mapped_export_is_validated_in_batches_with_its_own_names_and_lines(tmp_path):
    from fedinsight.data.federation import check_paths
    from fedinsight.data.mapped_stream import streamable
    from fedinsight.data.mapping import load_mapping

    folder = tmp_path / "shop"
    planted = _write_mapped(folder)
    mapping = load_mapping(folder / "mapping.toml")
    assert streamable("transactions", mapping.tables["transactions"], BLOCK)
    assert not streamable("customers", mapping.tables["customers"], BLOCK)  # read whole: the ids are the reference

    _, problems, mapping_problems = check_paths([folder], block_bytes=BLOCK)
    text = [str(p) for p in problems]
    second = "umsatz_2024-02.csv"
    assert any(second in t and "Betrag (amount)" in t and f"(lines {planted['amount']})" in t and "'zwölf'" in t
               for t in text), text
    assert any(second in t and "Beleg (transaction_id)" in t and "duplicate key" in t
               and f"(lines {planted['duplicate']})" in t for t in text), text  # across the two files
    assert mapping_problems == [] and len(problems) == 2
    _, whole, _ = check_paths([folder], block_bytes=1 << 30)  # exactly what the whole read reports
    assert problems == whole

    # with the amount and the id fixed: a customer id the customers table does not know
    path = folder / second
    path.write_text(path.read_text(encoding="utf-8").replace("zwölf", "12").replace("b1-40;", "bX;")
                    .replace(";k7;", ";k999;"), encoding="utf-8")
    _, problems, _ = check_paths([folder], block_bytes=BLOCK)
    assert len(problems) == 1 and "customer_id not in this partner's customers table" in str(problems[0])
    assert problems == check_paths([folder], block_bytes=1 << 30)[1]

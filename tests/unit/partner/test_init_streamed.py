"""``partner init`` / ``data synth --policy`` on a plain Parquet folder scans it batch by batch (out of core):
the same findings as the whole-table pandas scan, and a column that looks like personal data in one batch only
is still declared."""

from __future__ import annotations

import pandas as pd

from fedinsight.data.federation import load_partner_folder
from fedinsight.data.schema import SCHEMA_COLUMNS
from fedinsight.partner import policy_init
from fedinsight.privacy import pii_stream
from fedinsight.privacy.pii import scan_tables


def _folder(root, rows: int = 3_000):
    folder = root / "shop"
    folder.mkdir()
    ids = [f"c{i:05d}" for i in range(rows // 3)]
    pd.DataFrame({"customer_id": ids, "full_name": [f"Anna Berg{i}" for i in range(len(ids))],
                  "region": ["north", "south"] * (len(ids) // 2), "consent": True}).to_parquet(
        folder / "customers.parquet")
    memo = [f"order {i}" for i in range(rows // 2)] + [f"buyer{i}@example.org" for i in range(rows - rows // 2)]
    pd.DataFrame({"customer_id": [ids[i % len(ids)] for i in range(rows)],
                  "timestamp": pd.date_range("2025-01-01", periods=rows, freq="h"),
                  "amount": [10.25] * rows, "quantity": 1, "memo": memo}).to_parquet(folder / "transactions.parquet")
    return folder


def _keys(findings):
    return sorted((f.where, f.kind, f.by) for f in findings)


def test_streamed_findings_equal_the_pandas_scan(tmp_path):
    folder = _folder(tmp_path)
    data = next(iter(load_partner_folder(folder).values()))
    whole = scan_tables(data.tables(), schema=SCHEMA_COLUMNS)  # type: ignore[arg-type]
    path, findings = policy_init.init_partner(folder)
    assert _keys(findings) == _keys(whole)
    assert {"customers.full_name", "transactions.memo"} <= {f.where for f in findings}
    assert '"transactions.memo" = "drop"' in path.read_text()


def test_a_column_flagged_in_one_batch_only_is_declared(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    monkeypatch.setattr(pii_stream, "BATCH_ROWS", 1_000)  # 3 batches: the e-mails fill only the last two
    _, findings = policy_init.init_partner(folder)
    memo = [f for f in findings if f.where == "transactions.memo"]
    assert len(memo) == 1 and memo[0].kind == "email" and memo[0].share == 1.0


def test_a_large_table_is_scanned_in_row_groups_spread_over_it(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = _folder(tmp_path)
    frame = pd.read_parquet(folder / "transactions.parquet")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "transactions.parquet",
                   row_group_size=500)  # 6 row groups; the e-mails fill the last three
    seen: dict[str, int] = {}
    original = pii_stream.scan_table

    def counting(table, frame, **kwargs):  # noqa: ANN001, ANN202
        seen[table] = seen.get(table, 0) + len(frame)
        return original(table, frame, **kwargs)

    monkeypatch.setattr(pii_stream, "scan_table", counting)
    monkeypatch.setattr(pii_stream, "MAX_ROWS", 1_000)
    path, findings = policy_init.init_partner(folder)
    assert seen["transactions"] == 1_000 and seen["customers"] == 1_000  # groups 0 and 5 of 6; customers whole
    assert "transactions.memo" in {f.where for f in findings}
    # the policy says the check was partial, so the partner reviews the columns by hand
    assert "read 1,000 of the 3,000 rows of transactions" in path.read_text()
    assert "rows of customers" not in path.read_text()


def test_a_column_that_holds_personal_data_only_at_the_end_is_found(tmp_path, monkeypatch):
    """Tables are often in time order: e-mails only in the last row group are still found (the last row group
    is always read), and a phone number stored as a DECIMAL column is checked as the pandas scan checks it."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = _folder(tmp_path)
    frame = pd.read_parquet(folder / "transactions.parquet")
    frame["memo"] = [f"order {i}" for i in range(2_500)] + [f"buyer{i}@example.org" for i in range(500)]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, folder / "transactions.parquet", row_group_size=500)  # e-mails in the last group only
    customers = pd.read_parquet(folder / "customers.parquet")
    phones = pa.array([Decimal(f"4915112{i:05d}") for i in range(len(customers))], pa.decimal128(12, 0))
    pq.write_table(pa.Table.from_pandas(customers, preserve_index=False).append_column("mobile", phones),
                   folder / "customers.parquet")
    monkeypatch.setattr(pii_stream, "MAX_ROWS", 1_000)
    _, findings = policy_init.init_partner(folder)
    data = next(iter(load_partner_folder(folder).values()))
    whole = scan_tables(data.tables(), schema=SCHEMA_COLUMNS)  # type: ignore[arg-type]
    assert "transactions.memo" in {f.where for f in findings}
    assert {f.where for f in whole if f.where.startswith("customers.")} == \
        {f.where for f in findings if f.where.startswith("customers.")}

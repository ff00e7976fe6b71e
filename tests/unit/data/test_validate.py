"""The validator: every kind of bad input yields a DataValidationError that says where and what."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fedinsight.core.errors import DataValidationError
from fedinsight.data.validate import read_table, validate_paths

GOOD_TX = "customer_id,timestamp,amount,quantity,channel\nc1,2024-01-01,10.5,1,web\nc2,2024-02-03 10:00,3,2,\n"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(DataValidationError) as info:
        read_table(path)
    return [str(p) for p in info.value.problems]


def test_good_file_is_typed(tmp_path):
    frame = read_table(write(tmp_path, "transactions.csv", GOOD_TX))
    assert list(frame["customer_id"]) == ["c1", "c2"]
    assert str(frame["timestamp"].dtype).startswith("datetime64")
    assert frame["amount"].tolist() == [10.5, 3.0]
    assert frame["quantity"].tolist() == [1, 2]
    assert frame["channel"].isna().tolist() == [False, True]


def test_parquet_round_trip(tmp_path):
    frame = read_table(write(tmp_path, "transactions.csv", GOOD_TX))
    frame.to_parquet(tmp_path / "transactions.parquet")
    again = read_table(tmp_path / "transactions.parquet")
    pd.testing.assert_frame_equal(frame, again, check_dtype=False)


def test_misspelled_column_is_named_with_a_hint(tmp_path):
    path = write(tmp_path, "transactions.csv", GOOD_TX.replace("customer_id", "costumer_id", 1))
    (msg,) = problems_of(path)
    assert "customer_id" in msg and "costumer_id" in msg and "transactions.csv" in msg


@pytest.mark.parametrize(
    ("body", "column", "fragment", "line"),
    [
        ("c1,2024-01-01,abc,1", "amount", "expected a number", 2),
        ("c1,yesterday,1,1", "timestamp", "unparsable date", 2),
        (",2024-01-01,1,1", "customer_id", "missing value", 2),
        ("c1,2024-01-01,1,-3", "quantity", "negative value", 2),
        ("c1,2024-01-01,1,1.5", "quantity", "whole number", 2),
        ("c1,2099-01-01,1,1", "timestamp", "in the future", 2),
        ("c1,2024-01-01,-1,1", "amount", "negative value", 2),
    ],
)
def test_each_bad_value_names_column_and_line(tmp_path, body, column, fragment, line):
    path = write(tmp_path, "transactions.csv", f"customer_id,timestamp,amount,quantity\n{body}\n")
    msgs = problems_of(path)
    assert any(f"'{column}'" in m and fragment in m and f"lines {line}" in m for m in msgs), msgs


def test_all_problems_reported_and_rows_capped_at_ten(tmp_path):
    rows = "\n".join(f"c{i},2024-01-01,bad,1" for i in range(25))
    path = write(tmp_path, "transactions.csv", f"customer_id,timestamp,amount,quantity\n{rows}\nc,nope,1,-1\n")
    msgs = problems_of(path)
    amount = next(m for m in msgs if "'amount'" in m)
    assert "in 25 row(s)" in amount and "and 15 more" in amount
    assert amount.count(",") <= 12  # ten numbers shown
    assert any("'timestamp'" in m for m in msgs) and any("'quantity'" in m for m in msgs)


def test_duplicate_keys(tmp_path):
    path = write(tmp_path, "customers.csv", "customer_id,consent\na,true\nb,false\na,true\n")
    (msg,) = problems_of(path)
    assert "duplicate key" in msg and "lines 4" in msg


def test_funnel_stage_must_be_known(tmp_path):
    path = write(
        tmp_path, "events.csv",
        "customer_id,timestamp,campaign,channel,stage\nc,2024-01-01,x,email,exposure\nc,2024-01-02,x,email,bought\n",
    )
    (msg,) = problems_of(path)
    assert "'stage'" in msg and "exposure" in msg and "lines 3" in msg


def test_wrong_encoding_names_line(tmp_path):
    path = write(tmp_path, "customers.csv", "customer_id\nJos\xe9\n".encode("latin-1"))
    (msg,) = problems_of(path)
    assert "utf-8" in msg and "line 2" in msg


def test_other_encoding_can_be_declared(tmp_path):
    path = write(tmp_path, "customers.csv", "customer_id\nJos\xe9\n".encode("latin-1"))
    assert read_table(path, encoding="latin-1")["customer_id"].tolist() == ["José"]


@pytest.mark.parametrize("content", [b"", b"   \n", b"customer_id,consent\n"])
def test_empty_files(tmp_path, content):
    (msg,) = problems_of(write(tmp_path, "customers.csv", content))
    assert "empty" in msg or "no data rows" in msg


def test_ragged_csv_and_corrupt_parquet(tmp_path):
    (msg,) = problems_of(write(tmp_path, "customers.csv", 'customer_id\n"a,b\n'))
    assert "customers.csv" in msg
    (msg,) = problems_of(write(tmp_path, "customers.parquet", b"PAR1 not really"))
    assert "Parquet" in msg


def test_unknown_table_name(tmp_path):
    with pytest.raises(DataValidationError, match="cannot tell which table"):
        read_table(write(tmp_path, "stuff.csv", "a\n1\n"))


def test_validate_paths_collects_every_file(tmp_path):
    write(tmp_path, "transactions.csv", GOOD_TX)
    write(tmp_path, "customers.csv", "customer_id,consent\nx,maybe\n")
    write(tmp_path, "events.csv", "customer_id\nx\n")
    files, problems = validate_paths([tmp_path])
    assert len(files) == 3
    files_with_problems = {Path(p.file).name for p in problems}
    assert files_with_problems == {"customers.csv", "events.csv"}
    # events.csv misses four required columns: each is its own problem
    assert sum(1 for p in problems if Path(p.file).name == "events.csv") == 4


def test_validation_writes_nothing(tmp_path):
    path = write(tmp_path, "transactions.csv", "customer_id,timestamp,amount,quantity\nc,bad,1,1\n")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DataValidationError):
        read_table(path)
    validate_paths([tmp_path])
    assert sorted(tmp_path.rglob("*")) == before

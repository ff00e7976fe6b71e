"""A corpus of malformed partner folders: each one is refused by ``fedinsight data validate`` with exit 2, one
message naming the file, no traceback, and nothing written into the folder.

Why generated here rather than stored: every case is a few bytes, readable next to its name, and the corpus
grows by one line. The cases come from the audit of issue 19 (int64 overflow, duplicated headers, pipes,
folders and broken links named as tables, quoted line breaks) plus the usual suspects of hand-made exports.
See docs/reliability.md for what each family of failures does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedinsight.cli import main
from fedinsight.core.errors import DataValidationError
from fedinsight.data.federation import load_partner_folder
from fedinsight.data.validate import read_table

H = "transaction_id,customer_id,timestamp,amount,quantity,channel"
ROW = "t1,c1,2024-01-01,10.5,1,web"
ROW2 = "t2,c2,2024-02-03 10:00,3,2,"
TX = "transactions.csv"


def tx(*rows: str, header: str = H) -> Callable[[Path], str]:
    """A transactions.csv with ``rows`` after the header (and a good first row)."""
    return raw(TX, "\n".join((header, ROW, *rows)) + "\n")


def raw(name: str, data: str | bytes) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return name
    return build


def parquet(columns: dict[str, pa.Array | list], name: str = "transactions.parquet") -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        pq.write_table(pa.table(columns), folder / name)
        return name
    return build


def good_parquet(**replace: pa.Array | list) -> Callable[[Path], str]:
    columns = {"customer_id": ["c1", "c2"], "timestamp": ["2024-01-01", "2024-01-02"], "amount": [1.0, 2.0],
               "quantity": [1, 2]}
    return parquet({**columns, **replace})


def truncated_parquet(folder: Path) -> str:
    good_parquet()(folder)
    path = folder / "transactions.parquet"
    path.write_bytes(path.read_bytes()[:-40])
    return path.name


def folder_named_csv(folder: Path) -> str:
    (folder / TX).mkdir()
    return TX


def fifo(folder: Path) -> str:
    os.mkfifo(folder / TX)
    return TX


def dangling(folder: Path) -> str:
    (folder / TX).symlink_to(folder / "gone.csv")
    return TX


def loop(folder: Path) -> str:
    (folder / TX).symlink_to(folder / TX)
    return TX


MAPPING = """[tables.transactions]
files = ["{files}"]

[tables.transactions.columns]
customer_id = "{customer}"
timestamp = "date"
amount = "total"
quantity = "qty"
"""
ORDERS = "kunde,date,total,qty\nk1,2024-01-01,5,1\nk2,2024-01-02,6,2\n"


def mapped(mapping: str, orders: str = ORDERS, named: str = "mapping.toml") -> Callable[[Path], str]:
    """A partner folder of its own export (orders.csv) and a mapping; ``named``: the file the error must name."""
    def build(folder: Path) -> str:
        (folder / "orders.csv").write_text(orders, encoding="utf-8")
        (folder / "mapping.toml").write_text(mapping, encoding="utf-8")
        return named
    return build


LONG = "x" * 200_000

CASES: dict[str, Callable[[Path], str]] = {
    # --- files that are not tables at all
    "empty file": raw(TX, ""),
    "blank lines only": raw(TX, "  \n\n\n"),
    "header only": raw(TX, H + "\n"),
    "header only, CRLF": raw(TX, H + "\r\n"),
    "header only, no newline": raw(TX, H),
    "BOM then latin-1 bytes": raw(TX, b"\xef\xbb\xbf" + f"{H}\nt1,c\xe9,2024-01-01,1,1,web\n".encode("latin-1")),
    "latin-1 bytes": raw(TX, f"{H}\nt1,Jos\xe9,2024-01-01,1,1,web\n".encode("latin-1")),
    "UTF-16 text": raw(TX, f"{H}\n{ROW}\n".encode("utf-16")),
    "non-UTF-8 byte mid-file": raw(TX, f"{H}\n{ROW}\n".encode() + b"t2,c\xff2,2024-01-01,1,1,web\n"),
    "semicolon delimiter": raw(TX, H.replace(",", ";") + "\n" + ROW.replace(",", ";") + "\n"),
    "tab delimiter": raw(TX, H.replace(",", "\t") + "\n" + ROW.replace(",", "\t") + "\n"),
    "unbalanced quote": tx('t2,c2,"2024-01-01,1,1,web'),
    "too many fields": tx("t2,c2,2024-01-01,1,1,web,extra,more"),
    "NUL byte in a number": tx("t2,c2,2024-01-01,1\x00,1,web"),
    "NUL byte row": raw(TX, f"{H}\n{ROW}\n\x00\x00\x00\n"),
    # --- columns
    "missing customer_id": raw(TX, "transaction_id,timestamp,amount,quantity\nt1,2024-01-01,1,1\n"),
    "missing every required column": raw(TX, "foo,bar\n1,2\n"),
    "misspelled column": raw(TX, H.replace("customer_id", "costumer_id") + "\n" + ROW + "\n"),
    "duplicated header": raw(TX, "customer_id,timestamp,amount,amount,quantity\nc1,2024-01-01,1,2,1\n"),
    "duplicated header after stripping": raw(TX, "customer_id,timestamp,amount, amount ,quantity\n"
                                                 "c1,2024-01-01,1,2,1\n"),
    "capitalised required column": raw(TX, "customer_id,Timestamp,amount,quantity\nc1,2024-01-01,1,1\n"),
    # --- values
    "unparsable date": tx("t2,c2,yesterday,1,1,web"),
    "day-first date": tx("t2,c2,31/12/2024,1,1,web"),
    "impossible date": tx("t2,c2,2024-13-45,1,1,web"),
    "future date": tx("t2,c2,2999-01-01,1,1,web"),
    "empty date": tx("t2,c2,,1,1,web"),
    "negative amount": tx("t2,c2,2024-01-01,-5,1,web"),
    "negative quantity": tx("t2,c2,2024-01-01,5,-1,web"),
    "NaN amount": tx("t2,c2,2024-01-01,NaN,1,web"),
    "inf amount": tx("t2,c2,2024-01-01,inf,1,web"),
    "-inf quantity": tx("t2,c2,2024-01-01,1,-inf,web"),
    "amount overflowing float": tx("t2,c2,2024-01-01,1e400,1,web"),
    "fractional quantity": tx("t2,c2,2024-01-01,1,1.5,web"),
    "quantity above int64": tx("t2,c2,2024-01-01,1,99999999999999999999999,web"),
    "quantity below int64": tx("t2,c2,2024-01-01,1,-99999999999999999999999,web"),
    "quantity exactly 2**63": tx("t2,c2,2024-01-01,1,9223372036854775808,web"),
    "decimal comma": tx('t2,c2,2024-01-01,"10,5",1,web'),
    "currency sign": tx("t2,c2,2024-01-01,$10,1,web"),
    "mixed types in amount": tx("t2,c2,2024-01-01,ten,1,web", "t3,c3,2024-01-01,7,1,web"),
    "boolean as quantity": tx("t2,c2,2024-01-01,1,true,web"),
    "empty customer_id": tx("t2,,2024-01-01,1,1,web"),
    "whitespace customer_id": tx("t2,   ,2024-01-01,1,1,web"),
    "duplicate transaction ids": tx("t1,c2,2024-01-01,1,1,web"),
    "extremely long amount": tx(f"t2,c2,2024-01-01,{LONG},1,web"),
    "extremely long timestamp": tx(f"t2,c2,{LONG},1,1,web"),
    "quoted line break, then a bad date": tx('t2,c2,2024-01-01,1,1,"we\nb"', "t3,c3,bad,1,1,web"),
    # --- the other tables
    "customers: consent maybe": raw("customers.csv", "customer_id,consent\nc1,true\nc2,maybe\n"),
    "customers: negative age": raw("customers.csv", "customer_id,age\nc1,30\nc2,-5\n"),
    "customers: age above int64": raw("customers.csv", "customer_id,age\nc1,30\nc2,1e30\n"),
    "customers: duplicate id": raw("customers.csv", "customer_id,age\nc1,30\nc1,31\n"),
    "events: unknown stage": raw("events.csv", "customer_id,timestamp,campaign,channel,stage\n"
                                               "c1,2024-01-01,spring,email,purchase\n"),
    "events: missing campaign": raw("events.csv", "customer_id,timestamp,channel,stage\nc1,2024-01-01,email,click\n"),
    "interactions: negative rating": raw("interactions.csv", "customer_id,item_id,timestamp,rating\n"
                                                             "c1,i1,2024-01-01,-1\n"),
    "interactions: duplicate key": raw("interactions.csv", "customer_id,item_id,timestamp\n"
                                                           "c1,i1,2024-01-01\nc1,i1,2024-01-01\n"),
    "items: year not a number": raw("items.csv", "item_id,year\ni1,abc\n"),
    "items: negative price": raw("items.csv", "item_id,price\ni1,-1\n"),
    # --- names
    "only an unknown table name": raw("transaction.csv", f"{H}\n{ROW}\n"),
    "only an unknown parquet name": parquet({"a": [1]}, "orders.parquet"),
    "a table name with another suffix": raw("transactions.txt", f"{H}\n{ROW}\n"),
    # --- Parquet
    "parquet: not parquet at all": raw("transactions.parquet", b"PAR1 this is not parquet"),
    "parquet: truncated": truncated_parquet,
    "parquet: uint64 maximum": good_parquet(quantity=pa.array([1, 2**64 - 1], pa.uint64())),
    "parquet: amount and 'amount '": good_parquet(**{"amount ": [1.0, 2.0]}),
    "parquet: no rows": parquet({"customer_id": pa.array([], pa.string()), "amount": pa.array([], pa.float64())}),
    "parquet: amount as text": good_parquet(amount=["1", "abc"]),
    "parquet: negative amount": good_parquet(amount=[1.0, -2.0]),
    "parquet: null quantity": good_parquet(quantity=pa.array([1, None], pa.int64())),
    "parquet: integer timestamps": good_parquet(timestamp=[1704067200, 1704153600]),
    "parquet: infinite amount": good_parquet(amount=[1.0, float("inf")]),
    # --- not regular files
    "a folder named transactions.csv": folder_named_csv,
    "a pipe named transactions.csv": fifo,
    "a dangling link": dangling,
    "a symlink loop": loop,
    # --- a mapping that does not fit
    "mapping names a missing column": mapped(MAPPING.format(files="orders.csv", customer="kunden_nr")),
    "mapping glob matches nothing": mapped(MAPPING.format(files="bestellungen_*.csv", customer="kunde")),
    "mapping is not TOML": mapped("[tables.transactions\nfiles = ["),
    "mapping names an unknown table": mapped(MAPPING.format(files="orders.csv", customer="kunde")
                                             .replace("tables.transactions", "tables.orders")),
    "mapped file has a bad amount": mapped(MAPPING.format(files="orders.csv", customer="kunde"),
                                           ORDERS + "k3,2024-01-03,lots,1\n", "orders.csv"),
}


def _snapshot(folder: Path) -> list[tuple[str, int, int]]:
    out = []
    for base, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            st = os.lstat(os.path.join(base, name))
            out.append((os.path.relpath(os.path.join(base, name), folder), st.st_mtime_ns, st.st_size))
    return sorted(out)


def _flat(text: str) -> str:
    return "".join(text.split())  # rich may wrap a long path over lines


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_with_one_clear_error(case, tmp_path, capsys):
    folder = tmp_path / "partner"
    folder.mkdir()
    name = CASES[case](folder)
    before = _snapshot(folder)
    code = main(["data", "validate", str(folder)])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 2, text
    assert "Traceback" not in text
    assert _flat(name) in _flat(text), text
    assert _snapshot(folder) == before  # nothing written, nothing touched


def test_unreadable_file_is_one_error(tmp_path, capsys, monkeypatch):
    """A chmod-000 file read by another user (tests run as root, so the read is made to fail instead)."""
    path = tmp_path / TX
    path.write_text(f"{H}\n{ROW}\n", encoding="utf-8")
    real = Path.read_bytes

    def denied(self: Path) -> bytes:
        if self.name == TX:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert main(["data", "validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "permission denied" in err and TX in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["99999999999999999999999", "9223372036854775808"])
def test_int64_overflow_names_file_column_and_line(tmp_path, value):
    path = tmp_path / TX
    path.write_text(f"{H}\n{ROW}\nt2,c2,2024-01-01,1,{value},web\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        read_table(path)
    (problem,) = info.value.problems
    assert problem.column == "quantity" and "too large" in problem.message and "lines 3" in problem.message


def test_parquet_uint64_maximum_names_the_row(tmp_path):
    good_parquet(quantity=pa.array([1, 2**64 - 1], pa.uint64()))(tmp_path)
    with pytest.raises(DataValidationError) as info:
        read_table(tmp_path / "transactions.parquet")
    (problem,) = info.value.problems
    assert problem.column == "quantity" and "rows 2" in problem.message


@pytest.mark.parametrize("header", ["amount,amount", "amount, amount ", "amount,amount  "])
def test_duplicated_csv_header_is_named(tmp_path, header):
    path = tmp_path / TX
    path.write_text(f"customer_id,timestamp,quantity,{header}\nc1,2024-01-01,1,2,3\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match="more than once.*'amount'"):
        read_table(path)


def test_line_numbers_count_quoted_line_breaks_and_blank_lines(tmp_path):
    text = f'{H}\n{ROW}\nt2,c2,2024-01-01,1,1,"two\nlines"\n\n   \nt3,c3,bad,1,1,web\nt4,c4,worse,1,1,web\n'
    path = tmp_path / TX
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataValidationError) as info:
        read_table(path)
    (problem,) = info.value.problems
    lines = text.splitlines()
    assert lines[6].startswith("t3") and lines[7].startswith("t4")  # file lines 7 and 8
    assert "lines 7, 8" in problem.message


@pytest.mark.parametrize("make", [folder_named_csv, fifo, dangling, loop])
def test_a_partner_whose_table_cannot_be_read_stops_the_federation(tmp_path, make):
    """Such a partner was once skipped silently, and a simulation then released insights without its table."""
    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "customers.csv").write_text("customer_id\nc1\n", encoding="utf-8")
    (tmp_path / "alpha" / TX).write_text(f"{H}\n{ROW}\n", encoding="utf-8")
    make(tmp_path / "beta")
    with pytest.raises(DataValidationError, match="beta"):
        load_partner_folder(tmp_path)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.booleans()), min_size=1, max_size=12))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_reported_lines_are_file_lines(tmp_path, records):
    """Whatever quoted line breaks and blank lines come before them, bad rows are reported at their file line.

    Each record: (its channel holds a quoted line break, blank lines before it, its date is bad)."""
    lines = [H]
    bad_at = []
    physical = 1  # the file lines written so far
    for i, (broken, blanks, bad) in enumerate(records):
        lines += [""] * blanks
        physical += blanks
        if bad:
            bad_at.append(physical + 1)
        channel = '"we\nb"' if broken else "web"
        lines.append(f"t{i},c{i},{'never' if bad else '2024-01-01'},1,1,{channel}")
        physical += 2 if broken else 1
    text = "\n".join(lines) + "\n"
    path = tmp_path / "lines" / TX
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if not bad_at:
        read_table(path)
        return
    with pytest.raises(DataValidationError) as info:
        read_table(path)
    (problem,) = info.value.problems
    shown = ", ".join(str(n) for n in bad_at[:10])
    assert f"(lines {shown}" in problem.message
    assert all(text.split("\n")[n - 1].split(",")[2] == "never" for n in bad_at)  # the numbers are file lines


def test_mapped_files_report_file_lines_too(tmp_path):
    orders = 'kunde,date,total,qty,note\nk1,2024-01-01,5,1,"two\nlines"\nk2,2024-01-02,lots,2,x\n'
    mapped(MAPPING.format(files="orders.csv", customer="kunde"), orders)(tmp_path)
    with pytest.raises(DataValidationError) as info:
        load_partner_folder(tmp_path)
    (problem,) = info.value.problems
    assert problem.file.endswith("orders.csv") and "lines 4)" in problem.message

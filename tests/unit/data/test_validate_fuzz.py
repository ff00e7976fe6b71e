"""Property tests: malformed tables always give a DataValidationError, never another exception,
and validating never writes a file."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedinsight.core.errors import DataValidationError
from fedinsight.data.federation import load_partner_folder
from fedinsight.data.schema import TABLES
from fedinsight.data.validate import read_table

GOOD_VALUES = {
    "string": st.sampled_from(["a", "c-17", "Zoë", "x y"]),
    "category": st.sampled_from(["exposure", "click", "convert"]),
    "int": st.integers(0, 1000).map(str),
    "float": st.floats(0, 1e6, allow_nan=False).map(lambda v: f"{v:.2f}"),
    "bool": st.sampled_from(["true", "false", "1", "0"]),
    "timestamp": st.dates(pd.Timestamp("2000-01-01").date(), pd.Timestamp("2025-01-01").date()).map(str),
}
# Values that can never be valid for the given type.
BAD_VALUES = {
    "int": st.sampled_from(["abc", "1.5", "inf", "1e999x"]),
    "float": st.sampled_from(["abc", "nan?", "--1", "1,5"]),
    "bool": st.sampled_from(["maybe", "2", "yes please"]),
    "timestamp": st.sampled_from(["not a date", "2024-13-45", "2999-01-01", "31/31/2020"]),
    "category": st.sampled_from(["bought", "EXPOSED", "?"]),
    "string": st.just(""),  # only bad where the column is not nullable
}
junk_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@st.composite
def malformed_table(draw):
    spec = draw(st.sampled_from(list(TABLES.values())))
    columns = [c for c in spec.columns if c.required or draw(st.booleans())]
    extra = draw(st.lists(st.sampled_from(["note", "misc", "zz"]), max_size=2, unique=True))
    n_rows = draw(st.integers(1, 8))
    rows = [[draw(GOOD_VALUES[c.type]) for c in columns] + [draw(junk_text) for _ in extra] for _ in range(n_rows)]
    # Make the table malformed in at least one way.
    mode = draw(st.sampled_from(["drop_required", "bad_value", "both"]))
    header = [c.name for c in columns] + extra
    breakable = [i for i, c in enumerate(columns) if c.type != "string" or not c.nullable]
    if mode in ("bad_value", "both"):
        i = draw(st.sampled_from(breakable))
        r = draw(st.integers(0, n_rows - 1))
        rows[r][i] = draw(BAD_VALUES[columns[i].type])
    if mode in ("drop_required", "both"):
        required = [i for i, c in enumerate(columns) if c.required]
        i = draw(st.sampled_from(required))
        header = header[:i] + header[i + 1 :]
        rows = [row[:i] + row[i + 1 :] for row in rows]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return spec.name, buf.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed_table(), st.sampled_from(["csv", "parquet"]))
def test_malformed_tables_raise_validation_error_only(table, fmt):
    name, text = table
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        partner = root / "partner-0"
        partner.mkdir()
        path = partner / f"{name}.csv"
        path.write_text(text, encoding="utf-8")
        if fmt == "parquet":
            path.unlink()
            path = partner / f"{name}.parquet"
            try:
                frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
                frame.to_parquet(path)
            except pd.errors.EmptyDataError:  # every column dropped: the "Parquet" file is just text
                path.write_text(text, encoding="utf-8")
        before = sorted(p.name for p in root.rglob("*"))
        raised = []
        for call in (lambda: read_table(path), lambda: load_partner_folder(root)):
            try:
                call()
            except DataValidationError as exc:
                raised.append(exc)
        assert len(raised) == 2, f"malformed {name} table was accepted:\n{text}"
        assert all(exc.problems for exc in raised)
        assert sorted(p.name for p in root.rglob("*")) == before


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(list(TABLES)), st.sampled_from([".csv", ".parquet"]))
def test_arbitrary_bytes_never_crash(content, table, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{table}{suffix}"
        path.write_bytes(content)
        try:
            read_table(path)
        except DataValidationError:
            return
        raise AssertionError(f"random bytes accepted as {table}: {content!r}")

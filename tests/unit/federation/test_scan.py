"""The scan helpers every task writes its engine SQL with."""

from __future__ import annotations


def test_the_engine_trims_exactly_what_python_strips():
    """WHITESPACE is every character ``str.isspace`` names, and DuckDB's trimmed value equals ``str.strip()``."""
    import sys

    import duckdb

    from fedinsight.federation.scan import WHITESPACE, stripped_sql

    assert set(WHITESPACE) == {chr(i) for i in range(sys.maxunicode + 1) if chr(i).isspace()}
    values = ["\u30000006\u3000", "0004\t", " a b ", "x", "", "e\u0301", "abc\u2028", "\xa0\xa0", "\u200b0007"]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, x VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
    got = [row[0] for row in con.execute(f"SELECT {stripped_sql('x')} FROM t ORDER BY i").fetchall()]
    assert got == [v.strip() for v in values]
    assert got[-1] == "\u200b0007"  # a zero-width space is not whitespace to Python either: kept


def test_a_string_literal_with_a_nul_reads_back_the_same_in_duckdb_and_transpiles_without_an_escape():
    """Spark would read ``\\0`` followed by digits as one octal escape: a NUL is spliced in with chr(0)."""
    import duckdb
    import sqlglot

    from fedinsight.federation.scan import sql_string

    con = duckdb.connect()
    for value in ["a\x0012", "o'brien", "x\x00", "plain"]:
        assert con.execute(f"SELECT {sql_string(value)}").fetchone()[0] == value
    nul = sql_string("a\x0012")
    spark = sqlglot.transpile(f"SELECT {nul}", read="duckdb", write="spark")[0]
    assert "\\0" not in spark and "CHR(0)" in spark

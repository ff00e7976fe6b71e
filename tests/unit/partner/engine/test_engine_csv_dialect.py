"""A CSV source's dialect is sniffed once (``DuckDBEngine._read_csv``) instead of on every bind: the engine must read
each file exactly as DuckDB's auto-detection reads it -- quoted delimiters and quotes, tabs, semicolons with CRLF,
odd column names, a header-only file -- and an empty file still reads as auto-detection reads it."""

from __future__ import annotations

import pytest

from fedinsight.partner.engine.duckdb_backend import DuckDBEngine, _literal
from fedinsight.partner.engine.sources import CsvFile

FILES = {
    "quoted": 'customer_id,note,amount\n1,"a, b",2.5\n2,"say ""hi""",\n3,,7\n',
    "tabs": "customer_id\tnote\n1\tx y\n2\t\n",
    "semicolon_crlf": 'customer_id;it\'s "odd"\r\n1;x\r\n;\r\n"2;3";y\r\n',
    "header_only": "customer_id,amount\n",
    "empty": "",
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_csv_reads_as_auto_detection_reads_it(tmp_path, name):
    path = tmp_path / f"{name}.csv"
    path.write_text(FILES[name], newline="")
    engine = DuckDBEngine(tmp_path / "spill")
    try:
        engine.register("t", CsvFile(path))
        ours = engine.con.sql("SELECT * FROM t").to_arrow_table()
        auto = engine.con.sql(f"SELECT * FROM read_csv({_literal(str(path))}, header = true, "
                              "all_varchar = true)").to_arrow_table()
        assert ours.equals(auto)
        if name != "empty":  # a sniffed file's view names its dialect: no sniffing when a statement binds
            view_sql = engine.con.sql("SELECT sql FROM duckdb_views() WHERE view_name = 't'").fetchall()[0][0]
            assert "auto_detect=false" in view_sql.replace(" ", "").lower()
    finally:
        engine.close()

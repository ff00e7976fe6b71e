"""A partner whose engine runs out of spill space gets one clear error naming what to change, and the spill folder
goes with the engine (issue 17's bad input: "a partner that runs out of disk while spilling").

DuckDB's own cap on its temp folder (``max_temp_directory_size``) stands in for a full disk: the query must spill
(a 32 MB memory limit against a 3 M-group aggregate) and may not, which is what a full disk does to it."""

from __future__ import annotations

import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.partner.engine.duckdb_backend import DuckDBEngine


def test_running_out_of_spill_space_is_one_error_and_leaves_no_spill_files(tmp_path):
    spill = tmp_path / "engine-tmp"
    engine = DuckDBEngine(spill, memory_limit="32MB", threads=1)
    engine.con.execute("SET max_temp_directory_size = '2MB'")  # the "disk" holds 2 MB
    try:
        with pytest.raises(ConfigError, match="ran out of memory and disk") as caught:
            engine.fetch("SELECT i % 3000000 AS k, count(*) AS n, sum(i) AS s FROM range(9000000) t(i) "
                         "GROUP BY k ORDER BY k")
        message = str(caught.value)
        assert "engine-memory" in message and str(spill) in message  # what to change, and where the space ran out
        assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no DuckDB traceback chained
    finally:
        engine.close()
    assert not spill.exists()


def test_the_same_query_completes_when_the_engine_may_spill(tmp_path):
    """The control: the error above comes from the spill cap, not from the query."""
    spill = tmp_path / "engine-tmp"
    engine = DuckDBEngine(spill, memory_limit="32MB", threads=1)
    try:
        got = engine.fetch("SELECT i % 3000000 AS k, count(*) AS n FROM range(9000000) t(i) GROUP BY k ORDER BY k")
    finally:
        engine.close()
    assert len(got) == 3_000_000 and int(got["n"].sum()) == 9_000_000
    assert not spill.exists()

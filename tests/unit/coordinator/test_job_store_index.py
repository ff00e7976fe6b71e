"""The scheduler's lookup of its own jobs (task, requester) is indexed, also on a job table created before the
index existed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from fedinsight.coordinator.job_store import JobStore, by_requester_query

INDEX = "ix_coordinator_jobs_task_requester"


def _indexes(store: JobStore) -> set[str]:
    return {ix["name"] for ix in inspect(store.engine).get_indexes("coordinator_jobs")}


def test_by_requester_uses_the_index(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'c.db'}")
    for n in range(3):
        store.create(task="propensity", federation="f", run_config={"n": n}, requester=f"r{n % 2}")
    assert INDEX in _indexes(store)
    query = by_requester_query("propensity", "r0")  # the very query the store runs
    sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    assert INDEX in plan
    assert len(store.by_requester("propensity", "r0")) == 2


def test_an_older_job_table_gets_the_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = JobStore(url)
    job = store.create(task="propensity", federation="f", run_config={}, requester="r")
    with store.engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {INDEX}"))
    assert INDEX not in _indexes(store)
    reopened = JobStore(url)
    assert INDEX in _indexes(reopened)
    assert [j.id for j in reopened.by_requester("propensity", "r")] == [job.id]

"""The privacy ledger and the insight store on a real PostgreSQL server (started and stopped by this test).

The server is a throw-away cluster: ``initdb`` in a temp dir, ``pg_ctl start`` listening only on a unix
socket in that dir, stopped by its postmaster PID at the end. As root, the server runs as the
``postgres`` user (PostgreSQL refuses to run as root). ``.ci/run`` installs Debian's ``postgresql``
package when ``pg_ctl`` is missing; without it this module is skipped with that instruction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from dp_accounting import dp_event
from support.postgres import postgres_server

from fedinsight.core.errors import BudgetExceededError
from fedinsight.federation.store import InsightStore
from fedinsight.privacy.ledger import PrivacyLedger, dpsgd_event


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def ledger_url(pg_url) -> str:
    """A clean schema state per test: drop fedinsight's tables."""
    from sqlalchemy import create_engine

    from fedinsight.core.db import Base

    engine = create_engine(pg_url)
    import fedinsight.federation.store  # noqa: F401
    import fedinsight.privacy.ledger  # noqa: F401  (register the tables on Base)

    Base.metadata.drop_all(engine)
    engine.dispose()
    return pg_url


def test_ledger_accumulates_refuses_and_survives_a_restart_on_postgres(ledger_url):
    ledger = PrivacyLedger(ledger_url)
    assert ledger.engine.dialect.name == "postgresql"
    ledger.set_budget("p", 1.0, 1e-5)
    ledger.charge("p", dp_event.LaplaceDpEvent(4.0), job_id="q1", kind="query", requester="ana")
    ledger.charge("p", dpsgd_event(8.0, 0.01, 50), job_id="t1", kind="training")
    with pytest.raises(BudgetExceededError, match="remaining"):
        ledger.charge("p", dp_event.LaplaceDpEvent(0.5), job_id="q2", kind="query")
    spent = ledger.status("p").epsilon_spent
    ledger.engine.dispose()
    again = PrivacyLedger(ledger_url)
    assert again.status("p").epsilon_spent == pytest.approx(spent)
    assert [c.job_id for c in again.charges("p")] == ["q1", "t1"]


def test_concurrent_charges_cannot_both_pass_on_postgres(ledger_url):
    PrivacyLedger(ledger_url).set_budget("p", 1.0, 1e-5)
    event = dp_event.LaplaceDpEvent(1.6)  # ~0.63 each: one fits, two do not
    results: list[str] = []
    barrier = threading.Barrier(4)

    def attempt(i: int) -> None:
        own = PrivacyLedger(ledger_url)  # its own engine and connections, like a separate process
        barrier.wait()
        try:
            own.charge("p", event, job_id=f"j{i}", kind="query")
            results.append("ok")
        except BudgetExceededError:
            results.append("refused")
        finally:
            own.engine.dispose()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok", "refused", "refused", "refused"]
    assert PrivacyLedger(ledger_url).status("p").charges == 1


def test_insight_store_on_postgres(ledger_url):
    store = InsightStore(ledger_url)
    insight = {"name": "x", "kind": "ltv_tiers", "query": {"kind": "ltv_tiers"}, "epsilon": 0.2, "delta": 1e-6,
               "partners": 3, "suppressed_groups": 1, "result": {"tiers": []}}
    (first,) = store.save("b1", [insight], requester="ana")
    assert store.get(first).insight == insight and store.get("x").batch_id == "b1"
    assert [s.id for s in store.list()] == [first]


def test_insights_task_charges_and_stores_in_postgres(ledger_url, tmp_path):
    """The whole coordinator task with its ledger and insight store in PostgreSQL."""
    from support.insights import FakeGrid, run_task

    from fedinsight.data.synth import SynthConfig, write_synthetic
    from fedinsight.partner.policy_init import init_federation
    from fedinsight.tasks.insights.catalogue import default_batch

    write_synthetic(SynthConfig(customers=3_000, partners=2, seed=4), tmp_path / "data", finalize=init_federation)
    grid = FakeGrid({k: str(tmp_path / "data" / f"partner-{k}") for k in range(2)})
    batch = default_batch("synthetic", epsilon=1.0, only=["ltv-tiers", "funnel-by-segment"])
    rc = {"task": "insights", "batch": batch.model_dump_json(), "partners": 2, "ledger-url": ledger_url,
          "budget": 1.2}
    run_task(grid, rc)
    ledger = PrivacyLedger(ledger_url)
    assert ledger.status("partner-0").epsilon_spent == pytest.approx(1.0, rel=1e-3)
    assert {s.name for s in InsightStore(ledger_url).list()} == {"ltv-tiers", "funnel-by-segment"}
    with pytest.raises(BudgetExceededError):
        run_task(grid, rc)
    assert grid.sent.count("compute") == 2  # the refused batch never reached the partners' compute step

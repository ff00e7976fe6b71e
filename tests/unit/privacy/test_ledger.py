"""The privacy ledger: cumulative accounting, refusal before overspending, persistence, atomicity."""

from __future__ import annotations

import threading

import pytest
from dp_accounting import dp_event

from fedinsight.core.errors import BudgetExceededError, ConfigError, UnknownPartnerError
from fedinsight.privacy.ledger import (
    PrivacyLedger,
    compose_epsilon,
    dpsgd_event,
    event_from_dict,
    event_to_dict,
)


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def test_events_round_trip_through_json():
    event = dp_event.ComposedDpEvent([dpsgd_event(1.1, 0.01, 300), dp_event.LaplaceDpEvent(2.0)])
    assert event_from_dict(event_to_dict(event)) == event


def test_cumulative_epsilon_grows_and_refuses_past_budget(url):
    ledger = PrivacyLedger(url)
    ledger.set_budget("p0", epsilon=1.0, delta=1e-5)
    query = dp_event.LaplaceDpEvent(4.0)  # roughly epsilon 0.25 each
    spent = []
    for i in range(3):
        spent.append(ledger.charge("p0", query, job_id=f"q{i}", kind="query")["p0"])
    assert spent[0] < spent[1] < spent[2] <= 1.0
    with pytest.raises(BudgetExceededError, match="remaining"):
        for i in range(3, 10):
            ledger.charge("p0", query, job_id=f"q{i}", kind="query")
    status = ledger.status("p0")
    assert status.epsilon_spent <= status.epsilon_budget
    assert status.charges == len(ledger.charges("p0"))
    assert ledger.charges("p0")[-1].epsilon_after == pytest.approx(status.epsilon_spent)


def test_refusal_is_all_or_nothing_across_partners(url):
    ledger = PrivacyLedger(url)
    ledger.set_budget("rich", 10.0, 1e-5)
    ledger.set_budget("poor", 0.1, 1e-5)
    with pytest.raises(BudgetExceededError, match="poor") as info:
        ledger.charge(["rich", "poor"], dp_event.LaplaceDpEvent(1.0), job_id="j", kind="query")
    assert "rich" not in str(info.value).split(":", 1)[1]
    assert ledger.status("rich").charges == 0 and ledger.status("poor").charges == 0


def test_price_records_nothing(url):
    ledger = PrivacyLedger(url)
    ledger.set_budget("p", 3.0, 1e-5)
    eps = ledger.price("p", [dpsgd_event(1.0, 0.02, 100)])
    assert eps > 0 and ledger.status("p").epsilon_spent == 0.0


def test_ledger_survives_a_restart(url):
    first = PrivacyLedger(url)
    first.set_budget("p", 2.0, 1e-5)
    first.charge("p", dpsgd_event(1.5, 0.01, 200), job_id="train-1", kind="training", requester="ana")
    spent = first.status("p").epsilon_spent
    first.engine.dispose()
    again = PrivacyLedger(url)
    assert again.status("p").epsilon_spent == pytest.approx(spent)
    (charge,) = again.charges("p")
    assert (charge.job_id, charge.kind, charge.requester) == ("train-1", "training", "ana")
    # an existing budget is not reset by ensure_budget
    again.ensure_budget("p", 100.0, 1e-3)
    assert again.status("p").epsilon_budget == 2.0


def test_budget_changes_are_explicit_and_recorded(url):
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from fedinsight.privacy.ledger import BudgetChangeRow

    ledger = PrivacyLedger(url)
    ledger.set_budget("p", 1.0, 1e-5)
    ledger.set_budget("p", 2.0, 1e-5, reason="board approved", changed_by="dpo")
    with Session(ledger.engine) as s:
        changes = s.scalars(select(BudgetChangeRow).order_by(BudgetChangeRow.id)).all()
    assert [(c.old_epsilon, c.new_epsilon, c.reason) for c in changes] == [
        (None, 1.0, "initial budget"), (1.0, 2.0, "board approved")]


def test_concurrent_charges_cannot_both_pass(url):
    ledger = PrivacyLedger(url)
    ledger.set_budget("p", 1.0, 1e-5)
    event = dp_event.LaplaceDpEvent(1.6)  # ~0.63 each: one fits, two do not
    results: list[str] = []
    barrier = threading.Barrier(4)

    def attempt(i: int) -> None:
        own = PrivacyLedger(url)  # separate engine and connections, as separate processes would have
        barrier.wait()
        try:
            own.charge("p", event, job_id=f"j{i}", kind="query")
            results.append("ok")
        except BudgetExceededError:
            results.append("refused")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok", "refused", "refused", "refused"]
    assert ledger.status("p").epsilon_spent <= 1.0


def test_agrees_with_opacus_accountant_for_dpsgd(url):
    """Independent check: Opacus's own RDP accountant for the same DP-SGD steps."""
    from opacus.accountants import RDPAccountant

    sigma, q, steps, delta = 1.1, 0.01, 500, 1e-5
    opacus_acc = RDPAccountant()
    opacus_acc.history = [(sigma, q, steps)]
    expected = opacus_acc.get_epsilon(delta)
    ledger = PrivacyLedger(url)
    ledger.set_budget("p", 100.0, delta)
    got = ledger.charge("p", dpsgd_event(sigma, q, steps), job_id="t", kind="training")["p"]
    assert got == pytest.approx(expected, rel=0.03)


def test_laplace_epsilon_matches_pure_dp_within_rdp_slack():
    # Laplace with scale b = sensitivity/eps is eps-DP; RDP->(eps, delta) conversion is close to it.
    eps = compose_epsilon([dp_event.LaplaceDpEvent(1 / 0.5)], 1e-6)
    assert 0.45 <= eps <= 0.5 * 1.1
    pld = compose_epsilon([dp_event.LaplaceDpEvent(1 / 0.5)], 1e-6, accountant="pld")
    assert pld <= 0.5 + 1e-6


def test_errors(url):
    ledger = PrivacyLedger(url)
    with pytest.raises(UnknownPartnerError, match="ghost"):
        ledger.charge("ghost", dp_event.LaplaceDpEvent(1.0), job_id="x", kind="query")
    with pytest.raises(ConfigError):
        ledger.set_budget("p", -1.0, 1e-5)
    with pytest.raises(ConfigError):
        ledger.set_budget("p", 1.0, 0.0)
    with pytest.raises(ConfigError):
        PrivacyLedger(url, accountant="moments")


def test_withdrawing_a_job_restores_what_came_before_and_after_it(url):
    ledger = PrivacyLedger(url)
    ledger.set_budget("old", epsilon=5.0, delta=1e-5)
    query = dp_event.LaplaceDpEvent(4.0)
    ledger.charge("old", query, job_id="a", kind="query")
    before = ledger.status("old")
    ledger.charge_all(["old", "new"], [(query, "query", "q"), (query, "query", "q")], job_id="b",
                      create=(5.0, 1e-5))
    ledger.charge("old", query, job_id="c", kind="query")
    assert ledger.withdraw("b", ["old", "new"], created=["new"]) == ["new", "old"]
    assert ledger.partners() == ["old"]  # the budget job b created went with its only charges
    after = ledger.status("old")
    assert after.charges == 2 and [c.job_id for c in ledger.charges("old")] == ["a", "c"]
    # job c's cumulative epsilon no longer counts job b's events
    fresh = PrivacyLedger(url.replace("ledger.db", "fresh.db"))
    fresh.set_budget("old", epsilon=5.0, delta=1e-5)
    for job in ("a", "c"):
        fresh.charge("old", query, job_id=job, kind="query")
    assert [c.epsilon_after for c in ledger.charges("old")] == pytest.approx(
        [c.epsilon_after for c in fresh.charges("old")])
    assert after.epsilon_spent == pytest.approx(fresh.status("old").epsilon_spent)
    assert after.epsilon_spent > before.epsilon_spent


def test_withdrawing_keeps_a_created_budget_that_still_has_charges_and_others_jobs(url):
    ledger = PrivacyLedger(url)
    query = dp_event.LaplaceDpEvent(4.0)
    ledger.charge_all(["p"], [(query, "query", "q")], job_id="a", create=(5.0, 1e-5))
    ledger.charge_all(["p"], [(query, "query", "q")], job_id="b", create=(5.0, 1e-5))
    assert ledger.withdraw("b", ["p"], created=["p"]) == ["p"]
    assert ledger.partners() == ["p"] and [c.job_id for c in ledger.charges()] == ["a"]
    assert ledger.withdraw("b", ["p"]) == []  # nothing left to withdraw
    assert ledger.withdraw("zzz", ["unknown"], created=["unknown"]) == []

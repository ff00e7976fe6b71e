"""A refused or failed job leaves nothing in the ledger it did not spend: no phantom partner, no phantom charge.

The coordinator charges before anyone computes (the privacy guarantee); a partner that then released nothing
private under the job -- it refused, it failed, it was never asked -- gets that charge back, and a budget the
job created goes with it. Partners that did release something keep their charge.
"""

from __future__ import annotations

import pytest
from support.federations import PARTNER_NAMES, own_federation, run_in_process

from fedinsight.core.errors import BudgetExceededError, PartnerReplyError
from fedinsight.privacy.ledger import PrivacyLedger
from fedinsight.tasks.insights import client as insights_client

FIRST_NODE_PARTNER = sorted(PARTNER_NAMES)[0]  # partition 0: the first folder in name order


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    return own_federation(tmp_path_factory.mktemp("own") / "partners", customers=1200)


def snapshot(url: str) -> dict[str, object]:
    """Everything the report and the API read of a ledger: partners, budgets, spend, every charge."""
    ledger = PrivacyLedger(url)
    try:
        return {"partners": ledger.partners(),
                "status": {p: ledger.status(p) for p in ledger.partners()},
                "charges": [(c.id, c.partner_id, c.job_id, c.epsilon_after) for c in ledger.charges()]}
    finally:
        ledger.engine.dispose()


def _urls(out) -> tuple[str, str]:  # noqa: ANN001
    return f"sqlite:///{out / 'ledger.db'}", f"sqlite:///{out / 'partners.db'}"


def test_a_refused_job_leaves_both_ledgers_as_they_were(federation, tmp_path):
    coordinator, own = _urls(tmp_path)
    run_in_process("insights", federation, tmp_path, epsilon=1.0)  # a first job: the ledgers hold something
    before = snapshot(coordinator), snapshot(own)
    with pytest.raises(BudgetExceededError, match="before any partner computed"):
        run_in_process("insights", federation, tmp_path, epsilon=25.0)  # more than the budget of 20
    assert (snapshot(coordinator), snapshot(own)) == before


def test_a_job_every_partner_fails_leaves_a_new_ledger_empty(federation, tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise ValueError("disk full")

    monkeypatch.setattr(insights_client, "partner_features", broken)  # the partner's engine read fails
    coordinator, _ = _urls(tmp_path)
    with pytest.raises(PartnerReplyError):
        run_in_process("insights", federation, tmp_path)
    assert snapshot(coordinator) == {"partners": [], "status": {}, "charges": []}  # no phantom partners


def test_a_failed_job_takes_back_only_the_charge_of_partners_that_released_nothing(federation, tmp_path,
                                                                                  monkeypatch):
    coordinator, _ = _urls(tmp_path)
    run_in_process("insights", federation, tmp_path, epsilon=1.0)
    before = snapshot(coordinator)
    calls = []
    original = insights_client.partner_features

    def first_fails(partner, wire):  # noqa: ANN001, ANN202 - the partners are asked in node order
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("disk full")
        return original(partner, wire)

    monkeypatch.setattr(insights_client, "partner_features", first_fails)
    with pytest.raises(PartnerReplyError, match=FIRST_NODE_PARTNER):
        run_in_process("insights", federation, tmp_path, epsilon=1.0)
    after = snapshot(coordinator)
    assert after["partners"] == before["partners"]
    assert after["status"][FIRST_NODE_PARTNER] == before["status"][FIRST_NODE_PARTNER]  # released nothing
    for partner in set(PARTNER_NAMES) - {FIRST_NODE_PARTNER}:  # their noisy aggregates reached the coordinator
        assert after["status"][partner].epsilon_spent > before["status"][partner].epsilon_spent


def test_a_job_every_partner_refuses_past_its_own_cap_costs_nothing(federation, tmp_path):
    coordinator, own = _urls(tmp_path)
    caps = ",".join(f"{p}=0.05" for p in PARTNER_NAMES)  # each simulated partner's own lifetime cap
    with pytest.raises(BudgetExceededError, match="every partner refused"):
        run_in_process("propensity", federation, tmp_path, **{"partner-caps": caps})
    assert snapshot(coordinator)["partners"] == [] and snapshot(own)["partners"] == []

"""Every DP task: a partner refuses a job whose delta is above 1 / (10 x its customers), in hello -- before the
coordinator charges anyone -- and again when it is asked to spend (a coordinator whose later message names a
larger delta than its options is refused too). delta bounds the chance the guarantee fails for a customer;
above 1/n it could fail for one of them outright."""

from __future__ import annotations

import pytest
from support.federations import own_federation, run_in_process

from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.federation.budget import check_job_delta, delta_limit
from fedinsight.privacy.ledger import PrivacyLedger
from fedinsight.tasks import TASKS

# 800 customers over three partners: the smallest allows a delta of about 1 / (10 x 300)
assert TASKS  # importing fedinsight.tasks registers every task
DP_TASKS = ["insights", "segments", "baskets", "uplift", "propensity", "secure_training"]


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    return own_federation(tmp_path_factory.mktemp("own") / "partners", customers=800, seed=11)


def test_the_limit_and_its_message() -> None:
    assert delta_limit(1000) == pytest.approx(1e-4)
    assert delta_limit(0) == pytest.approx(0.1)  # an empty partner: no customer to protect, any small delta
    check_job_delta("p", 1e-4, 1000)
    with pytest.raises(ConfigError, match=r"partner p: delta 0.001 is above 1 / \(10 x its number of customers\); "
                                          r"run the job with --delta 0.0001 or smaller"):
        check_job_delta("p", 1e-3, 1000)


@pytest.mark.parametrize("task", DP_TASKS)
def test_a_delta_too_large_for_a_partner_is_refused_before_the_charge(task, federation, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"delta 0.01 is above 1 / \(10 x its number of customers\)"):
        run_in_process(task, federation, tmp_path, delta=0.01)
    ledger = tmp_path / "ledger.db"
    assert not ledger.exists() or PrivacyLedger(f"sqlite:///{ledger}").partners() == []


def test_the_gate_refuses_a_spend_at_a_larger_delta_than_hello_saw(tmp_path) -> None:
    """The coordinator's compute message names its own delta (insights' wire): the gate checks that one too."""
    from dp_accounting import dp_event

    from fedinsight.federation.budget import BudgetGate

    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'own.db'}")
    gate = BudgetGate("p", ledger, cap=5.0, delta=1e-6, require_dp=True)
    gate.customers = lambda: 1000
    event = dp_event.GaussianDpEvent(5.0)
    gate.spend("j", [event], job_epsilon=1.0, job_delta=1e-5, kind="query", description="ok")
    with pytest.raises(ConfigError, match="delta 0.001 is above"):
        gate.spend("j2", [event], job_epsilon=1.0, job_delta=1e-3, kind="query", description="too large")
    assert [c.job_id for c in ledger.charges("p")] == ["j"]


def test_thresholding_deltas_count_towards_the_rule_and_cannot_use_up_the_delta(tmp_path) -> None:
    """A coordinator cannot slip a large delta past the rule as a thresholding delta (insights' discovery and
    baskets' selection name theirs in the message), and a partner without a cap of its own still refuses
    thresholds that would leave no delta at all."""
    from dp_accounting import dp_event

    from fedinsight.federation.budget import BudgetGate
    from fedinsight.privacy.ledger import ThresholdDeltaEvent

    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'own.db'}")
    gate = BudgetGate("p", ledger, cap=10.0, delta=1e-6, require_dp=True)
    gate.customers = lambda: 1_000_000  # the rule allows delta 1e-7 in all
    noise = dp_event.GaussianDpEvent(5.0)
    with pytest.raises(ConfigError, match="is above 1 / \\(10 x its number of customers\\)"):
        gate.spend("j", [noise, ThresholdDeltaEvent(9e-7)], job_epsilon=5.0, job_delta=1e-8, kind="query",
                   description="a threshold nine times the partner's limit")
    gate.spend("j", [noise, ThresholdDeltaEvent(5e-8)], job_epsilon=5.0, job_delta=1e-8, kind="query",
               description="within the rule")
    with pytest.raises(ConfigError, match="is above"):  # the job's earlier threshold counts as well
        gate.spend("j", [noise, ThresholdDeltaEvent(5e-8)], job_epsilon=5.0, job_delta=1e-8, kind="query",
                   description="the same job's second threshold takes it past the rule")
    uncapped = BudgetGate("q", ledger, cap=None, delta=1e-6, require_dp=False)
    uncapped.customers = lambda: 10
    with pytest.raises(BudgetExceededError, match="would use up what is left of its delta"):
        uncapped.spend("k", [noise, ThresholdDeltaEvent(2e-6)], job_epsilon=1.0, job_delta=1e-8, kind="query",
                       description="more delta than the partner has")
    assert [c.job_id for c in ledger.charges()] == ["j"]

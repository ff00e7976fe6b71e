"""Every DP task: a partner refuses a job whose delta is above 1 / (10 x its customers), in hello -- before the
coordinator charges anyone -- and again when it is asked to spend (a coordinator whose later message names a
larger delta than its options is refused too). delta bounds the chance the guarantee fails for a customer;
above 1/n it could fail for one of them outright."""

from __future__ import annotations

import pytest
from support.federations import own_federation, run_in_process

from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.federation import delta as deltas
from fedinsight.federation.budget import check_job_delta, delta_ceiling, delta_limit, stated_epsilon
from fedinsight.privacy.ledger import PrivacyLedger
from fedinsight.tasks import TASKS

# 800 customers over three partners: the smallest allows a delta of about 1 / (10 x 300)
assert TASKS  # importing fedinsight.tasks registers every task
DP_TASKS = ["insights", "segments", "baskets", "uplift", "propensity", "secure_training", "recommend"]


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


def test_a_partners_ceiling_is_the_largest_power_of_ten_it_accepts() -> None:
    # 1 / (10 x n) rounded down to a power of ten: the size to a factor of ten, never above the limit
    for customers, ceiling in ((300, 1e-4), (1000, 1e-4), (1001, 1e-5), (99_999, 1e-6), (100_000, 1e-6),
                               (100_001, 1e-7), (149_076, 1e-7), (5_000_000, 1e-8)):
        assert delta_ceiling(customers) == pytest.approx(ceiling, rel=1e-12), customers
        assert delta_ceiling(customers) <= delta_limit(customers)
        check_job_delta("p", delta_ceiling(customers), customers)  # the partner accepts its own ceiling


def test_a_job_takes_the_smallest_ceiling_and_never_changes_a_given_delta() -> None:
    from fedinsight.tasks.insights.options import InsightsOptions

    auto = InsightsOptions(as_of="2026-01-01")
    assert auto.delta is None
    resolved, rule = deltas.resolve(auto, [1e-4, 1e-7, None], private=True)  # None: a partner that states none
    assert resolved.delta == 1e-7 and rule == deltas.RULE_DEFAULT
    assert deltas.resolve(auto, [1e-4, 1e-5], private=True)[0].delta == 1e-6  # never above 1e-6
    assert deltas.resolve(auto, [], private=True)[0].delta == 1e-6
    given = InsightsOptions(as_of="2026-01-01", delta=1e-5)
    assert deltas.resolve(given, [1e-7], private=True) == (given, deltas.RULE_GIVEN)  # its partner refuses it
    assert deltas.resolve(auto, [1e-7], private=False) == (auto, None)


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


def _one_large_partner(monkeypatch, name: str, customers: int) -> None:
    """``name`` counts ``customers`` for the delta rule (the others their own): a partner of a size no test
    federation here can afford to write."""
    from fedinsight.partner.side import PartnerSide

    real = PartnerSide.customer_count
    monkeypatch.setattr(PartnerSide, "customer_count",
                        lambda self: customers if self.partner_id == name else real(self))


def test_a_job_without_a_delta_runs_at_what_its_largest_partner_accepts(federation, tmp_path, monkeypatch) -> None:
    """A fixed default of 1e-6 was refused by every partner of more than 100,000 customers: the job now takes the
    smallest ceiling the partners state in hello, and is charged at it on both ledgers."""
    _one_large_partner(monkeypatch, "shop-us", 149_076)  # accepts at most 6.7e-7: 1e-7
    run = run_in_process("insights", federation, tmp_path / "auto")
    privacy = run.summary["privacy"]
    assert privacy["delta"] == 1e-7 and privacy["delta_rule"] == deltas.RULE_DEFAULT
    assert run.summary["settings"]["delta"] == 1e-7
    ceilings = {p.partner_id: p.delta_ceiling for p in run.session.partners.values()}
    assert ceilings.pop("shop-us") == 1e-7 and all(c is not None and c >= 1e-4 for c in ceilings.values())
    # the noise was calibrated at 1e-7: each partner's own ledger holds epsilon 1 at 1e-7 (less at 1e-6)
    partners = PrivacyLedger(f"sqlite:///{tmp_path / 'auto' / 'partners.db'}")
    assert sorted(partners.partners()) == sorted(run.summary["partner_ids"])
    for pid in partners.partners():
        events = partners.events(pid)
        assert stated_epsilon(events, 1e-7) == pytest.approx(1.0, rel=1e-3)
        assert stated_epsilon(events, 1e-6) < 0.95
    with pytest.raises(ConfigError, match=r"partner shop-us: delta 1e-06 is above .* run the job with --delta "
                                          r"1e-07 or smaller \(or without --delta"):
        run_in_process("insights", federation, tmp_path / "given", delta=1e-6)  # a given delta is never changed

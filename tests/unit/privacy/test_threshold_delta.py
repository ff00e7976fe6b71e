"""Thresholding deltas on the ledgers: a release that shows a key only above a noisy threshold is
(epsilon, delta_noise + delta_threshold)-DP, and those deltas add up over a partner's whole history.

The ledger therefore composes the continuous events at the budget's delta minus every thresholding delta
recorded so far: a budget (epsilon, delta) holds for everything together."""

from __future__ import annotations

import math

import pytest
from dp_accounting import dp_event

from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.privacy.ledger import (
    PrivacyLedger,
    ThresholdDeltaEvent,
    compose_epsilon,
    event_from_dict,
    event_to_dict,
    threshold_delta,
)

GAUSS = dp_event.GaussianDpEvent(3.0)


def test_a_thresholding_delta_is_taken_from_the_budgets_delta() -> None:
    plain = compose_epsilon([GAUSS], 1e-6 - 2e-7)
    assert compose_epsilon([GAUSS, ThresholdDeltaEvent(2e-7)], 1e-6) == pytest.approx(plain, rel=1e-12)
    assert compose_epsilon([GAUSS, ThresholdDeltaEvent(2e-7)], 1e-6) > compose_epsilon([GAUSS], 1e-6)


def test_nested_and_repeated_thresholds_add_up() -> None:
    nested = dp_event.ComposedDpEvent([GAUSS, dp_event.SelfComposedDpEvent(
        dp_event.ComposedDpEvent([GAUSS, ThresholdDeltaEvent(1e-7)]), 3)])
    assert threshold_delta([nested, ThresholdDeltaEvent(5e-8)]) == pytest.approx(3.5e-7)
    assert compose_epsilon([nested], 1e-6) == pytest.approx(
        compose_epsilon([GAUSS, dp_event.SelfComposedDpEvent(GAUSS, 3)], 7e-7), rel=1e-12)


def test_thresholds_alone_cost_no_epsilon_until_they_use_up_the_delta() -> None:
    assert compose_epsilon([ThresholdDeltaEvent(1e-7)], 1e-6) == 0.0
    assert compose_epsilon([GAUSS, ThresholdDeltaEvent(1e-6)], 1e-6) == math.inf
    assert compose_epsilon([ThresholdDeltaEvent(2e-6)], 1e-6) == math.inf


@pytest.mark.parametrize("bad", [-1e-9, 1.0, math.nan, math.inf])
def test_a_thresholding_delta_must_be_a_probability(bad: float) -> None:
    with pytest.raises(ConfigError, match="thresholding delta"):
        ThresholdDeltaEvent(bad)


def test_it_round_trips_through_the_ledgers_json() -> None:
    event = dp_event.ComposedDpEvent([GAUSS, ThresholdDeltaEvent(1e-7)])
    assert event_from_dict(event_to_dict(event)) == event


def test_the_ledger_refuses_a_job_whose_thresholds_exhaust_the_delta(tmp_path) -> None:
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.set_budget("p", 5.0, 1e-6)
    job = dp_event.ComposedDpEvent([GAUSS, ThresholdDeltaEvent(4e-7)])
    ledger.charge("p", job, job_id="j1", kind="query")
    ledger.charge("p", job, job_id="j2", kind="query")
    spent = ledger.status("p").epsilon_spent
    assert spent == pytest.approx(compose_epsilon([GAUSS, GAUSS], 2e-7), rel=1e-12)
    with pytest.raises(BudgetExceededError, match="would reach epsilon inf"):
        ledger.charge("p", job, job_id="j3", kind="query")  # 3 x 4e-7 > 1e-6: no epsilon holds at any delta left
    assert ledger.status("p").charges == 2
    assert ledger.status("p").epsilon_spent == spent

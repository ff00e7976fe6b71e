"""Grouping identical mechanisms and remembering figures must not change any epsilon.

The budget gate composes a partner's whole ledger on every message, so ``compose_epsilon`` groups equal
events into self-composed ones and ``history_epsilon`` merges equal Opacus entries; both are checked here
against the accountants run on the events exactly as given.
"""

from __future__ import annotations

import random

import pytest
from dp_accounting import dp_event
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from opacus.accountants import RDPAccountant

from fedinsight.privacy.dpsgd import history_epsilon, plan_dpsgd
from fedinsight.privacy.ledger import compose_epsilon, dpsgd_event


def _direct(events: list[dp_event.DpEvent], delta: float, accountant: str) -> float:
    acc = RdpAccountant() if accountant == "rdp" else PLDAccountant()
    acc.compose(dp_event.ComposedDpEvent(events))
    return float(acc.get_epsilon(delta))


def _ledger_like(seed: int) -> list[dp_event.DpEvent]:
    """A ledger as partners build it: rounds of the same DP-SGD step charge, Gaussian and Laplace releases,
    some charged together as one composed event."""
    rng = random.Random(seed)
    pool = [dpsgd_event(1.3, 0.05, 10), dp_event.GaussianDpEvent(8.0), dp_event.LaplaceDpEvent(2.0),
            dpsgd_event(2.0, 0.1, 5)]
    events: list[dp_event.DpEvent] = []
    for _ in range(rng.randint(5, 25)):
        if rng.random() < 0.3:
            events.append(dp_event.ComposedDpEvent([rng.choice(pool), rng.choice(pool)]))
        else:
            events.append(rng.choice(pool))
    return events


@pytest.mark.parametrize("seed", range(4))
def test_grouped_composition_equals_the_accountant_on_the_events_as_given(seed: int) -> None:
    events = _ledger_like(seed)
    assert compose_epsilon(events, 1e-6) == pytest.approx(_direct(events, 1e-6, "rdp"), rel=1e-9)


def test_grouped_composition_under_pld() -> None:
    events = [dp_event.LaplaceDpEvent(2.0)] * 4 + [dp_event.GaussianDpEvent(5.0)] * 3
    assert compose_epsilon(events, 1e-6, "pld") == pytest.approx(_direct(events, 1e-6, "pld"), rel=1e-3)


def test_order_of_charges_does_not_change_the_figure() -> None:
    events = _ledger_like(7)
    shuffled = list(events)
    random.Random(1).shuffle(shuffled)
    assert compose_epsilon(shuffled, 1e-6) == compose_epsilon(events, 1e-6)


def test_one_more_charge_always_costs_more() -> None:
    events = _ledger_like(3)
    assert compose_epsilon([*events, dp_event.LaplaceDpEvent(2.0)], 1e-6) > compose_epsilon(events, 1e-6)


def test_merged_opacus_history_equals_opacus_on_the_history_as_given() -> None:
    history = [(1.1, 0.05, 10), (1.1, 0.05, 10), (4.0, 1.0, 1), (1.1, 0.05, 10), (4.0, 1.0, 1), (0.9, 0.02, 30)]
    acc = RDPAccountant()
    acc.history = list(history)
    assert history_epsilon(history, 1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)


def test_a_remembered_plan_is_the_plan() -> None:
    first = plan_dpsgd(1.0, 1e-5, sample_rate=0.1, steps_per_round=10, rounds=7)
    again = plan_dpsgd(1.0, 1e-5, sample_rate=0.1, steps_per_round=10, rounds=7)
    other = plan_dpsgd(1.0, 1e-5, sample_rate=0.1, steps_per_round=10, rounds=8)
    assert again == first
    assert other.noise_multiplier > first.noise_multiplier  # more steps at one epsilon need more noise
    assert first.planned_epsilon() <= 1.0

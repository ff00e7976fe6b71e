"""DP-SGD wiring: one plan for the whole run, an accountant that persists, refusal past the budget."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.dpsgd import PartnerAccountant, history_epsilon, plan_dpsgd, train_dpsgd, train_sgd
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon


def _loss(model: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)


def _data(n: int = 400, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(n, generator=g) > 0).float()
    return [x, y]


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 8.0])
def test_plan_spends_the_budget_and_no_more(epsilon):
    plan = plan_dpsgd(epsilon, 1e-5, sample_rate=0.1, steps_per_round=10, rounds=5)
    spent = plan.planned_epsilon()
    assert spent <= epsilon
    assert spent >= 0.97 * epsilon  # the plan uses (almost) all of it: noise is not larger than needed
    # Opacus's accountant and dp_accounting (the ledger's) agree on the same releases
    assert history_epsilon(plan.history(), 1e-5) == pytest.approx(compose_epsilon(plan.events(), 1e-5), rel=1e-3)


def test_partner_accountant_is_cumulative_across_rounds_and_refuses_past_the_budget():
    """Re-create the accountant from its saved history each round, as the ClientApp does."""
    plan = plan_dpsgd(1.0, 1e-5, sample_rate=0.1, steps_per_round=10, rounds=4)
    model = nn.Linear(3, 1)
    data = _data()
    saved: dict = PartnerAccountant(delta=1e-5, budget=1.0).to_dict()
    for _ in range(plan.gaussian_releases):
        acc = PartnerAccountant(PartnerAccountant.history_from_dict(saved), delta=1e-5, budget=1.0)
        acc.record_gaussian(plan.gaussian_noise_multiplier)
        saved = acc.to_dict()
    previous = 0.0
    for _ in range(plan.rounds):
        acc = PartnerAccountant(PartnerAccountant.history_from_dict(saved), delta=1e-5, budget=1.0)
        entry = [(plan.noise_multiplier, plan.sample_rate, plan.steps_per_round)]
        assert not acc.would_exceed(entry)
        model, stats = train_dpsgd(model, data, _loss, noise_multiplier=plan.noise_multiplier,
                                   sample_rate=plan.sample_rate, steps=plan.steps_per_round,
                                   max_grad_norm=plan.max_grad_norm, lr=0.1, accountant=acc, seed=1)
        assert stats.steps == plan.steps_per_round
        eps = acc.epsilon()
        assert previous < eps <= 1.0  # cumulative: grows every round, never past the target
        previous = eps
        saved = acc.to_dict()
    assert previous == pytest.approx(history_epsilon(plan.history(), 1e-5), rel=1e-9)
    # the Opacus hook counted every optimizer step
    assert sum(s for _, q, s in PartnerAccountant.history_from_dict(saved) if q < 1) == plan.total_steps
    # one more round would pass the budget: the partner refuses it
    acc = PartnerAccountant(PartnerAccountant.history_from_dict(saved), delta=1e-5, budget=1.0)
    assert acc.would_exceed([(plan.noise_multiplier, plan.sample_rate, plan.steps_per_round)])
    assert acc.epsilon_after([(plan.noise_multiplier, plan.sample_rate, 1)]) > 1.0


def test_ledger_prices_the_plan_like_the_partner():
    plan = plan_dpsgd(2.0, 1e-5, sample_rate=0.05, steps_per_round=20, rounds=3)
    ledger = PrivacyLedger("sqlite://")
    ledger.set_budget("p", 2.0, 1e-5)
    assert ledger.price("p", plan.events()) == pytest.approx(plan.planned_epsilon(), rel=1e-3)
    for event in plan.events():
        ledger.charge("p", event, job_id="j", kind="training")
    assert ledger.status("p").epsilon_spent <= 2.0


def test_dp_training_learns_and_noise_is_not_reproducible_without_a_seed():
    data = _data(2000)
    start = nn.Linear(3, 1)
    nn.init.zeros_(start.weight)
    nn.init.zeros_(start.bias)
    acc = PartnerAccountant(delta=1e-5, budget=10.0)
    kwargs = dict(noise_multiplier=1.0, sample_rate=0.05, steps=60, max_grad_norm=1.0, lr=0.5, accountant=acc)
    a, _ = train_dpsgd(start, data, _loss, **kwargs)
    b, _ = train_dpsgd(start, data, _loss, **kwargs)
    assert float(start.weight.detach().abs().sum()) == 0.0  # the input model is not modified
    assert a.weight[0, 0] > 0.3  # learned the signal in feature 0
    assert not torch.equal(a.weight, b.weight)  # fresh OS entropy: the coordinator cannot replay the noise
    assert not hasattr(a.weight, "grad_sample")  # a clean module comes back
    plain, _ = train_sgd(start, data, _loss, sample_rate=0.05, steps=60, lr=0.5, seed=0)
    assert plain.weight[0, 0] > 0.3


def test_empty_poisson_batches_are_real_steps():
    acc = PartnerAccountant(delta=1e-5, budget=100.0)
    data = _data(5)
    _, stats = train_dpsgd(nn.Linear(3, 1), data, _loss, noise_multiplier=1.0, sample_rate=0.01, steps=30,
                           max_grad_norm=1.0, lr=0.1, accountant=acc, seed=0)
    assert stats.steps == 30
    assert acc.history == [(1.0, 0.01, 30)]


def test_bad_plans_are_refused():
    with pytest.raises(ConfigError, match="epsilon"):
        plan_dpsgd(0.0, 1e-5, sample_rate=0.1, steps_per_round=1, rounds=1)
    with pytest.raises(ConfigError, match="epsilon"):
        plan_dpsgd(math.inf, 1e-5, sample_rate=0.1, steps_per_round=1, rounds=1)
    with pytest.raises(ConfigError, match="delta"):
        plan_dpsgd(1.0, 1.0, sample_rate=0.1, steps_per_round=1, rounds=1)
    with pytest.raises(ConfigError, match="sample rate"):
        plan_dpsgd(1.0, 1e-5, sample_rate=0.0, steps_per_round=1, rounds=1)

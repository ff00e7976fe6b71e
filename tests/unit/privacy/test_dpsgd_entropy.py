"""DP-SGD on a partner draws its batches from OS entropy: the job's public seed does not fix them (issue 14).

If batch sampling followed a seed the coordinator knows (the run seed, the partner id, the round), the
coordinator could replay which customers each step used; Poisson subsampling's privacy amplification
assumes it cannot.
"""

from __future__ import annotations

import numpy as np
import torch

import fedinsight.privacy.dpsgd as dpsgd
from fedinsight.models import dp_logreg
from fedinsight.models.propensity import build_model, propensity_loss, tensors


def _recorded_batches(monkeypatch) -> list[list[list[int]]]:  # noqa: ANN001
    """Every call's batches, as the sampler of :func:`train_dpsgd` drew them."""
    calls: list[list[list[int]]] = []
    original = dpsgd._sampler

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        batches = [list(map(int, b)) for b in original(*args, **kwargs)]
        calls.append(batches)
        return batches

    monkeypatch.setattr(dpsgd, "_sampler", spy)
    return calls


def _data(n: int = 200) -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    return tensors(rng.random((n, 10)), (rng.random(n) < 0.3).astype(float), rng.normal(size=n))


def test_two_runs_with_the_same_seed_draw_different_batches(monkeypatch):
    calls = _recorded_batches(monkeypatch)
    for _ in range(2):
        model = build_model(10, "logreg", seed=7)  # the job's public seed, as every partner gets it (seeds torch)
        dpsgd.train_dpsgd(model, _data(), propensity_loss, noise_multiplier=1.0, sample_rate=0.1, steps=5,
                          max_grad_norm=1.0, lr=0.1)
    assert len(calls) == 2 and calls[0] != calls[1]


def test_a_test_seed_still_reproduces_batches(monkeypatch):
    """(The seed argument is for tests only; partners never pass one.)"""
    calls = _recorded_batches(monkeypatch)
    for _ in range(2):
        dpsgd.train_dpsgd(build_model(10, "logreg", 0), _data(), propensity_loss, noise_multiplier=1.0,
                          sample_rate=0.1, steps=5, max_grad_norm=1.0, lr=0.1, seed=123)
    assert calls[0] == calls[1]


def test_secure_training_dp_sgd_ignores_the_global_torch_seed():
    """dp_logreg's Opacus loader and noise use their own entropy-seeded generators, not torch's global one."""
    rng = np.random.default_rng(1)
    x, y = rng.random((300, 3)), (rng.random(300) < 0.5).astype(float)
    settings = dp_logreg.DpSgdSettings(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.1, steps=3)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)  # a public seed someone in the process set
        model = torch.nn.Linear(3, 1)
        dp_logreg.train_dp(model, x, y, settings)
        weights.append(model.weight.detach().numpy().copy())
    assert not np.allclose(weights[0], weights[1])

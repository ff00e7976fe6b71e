"""Membership inference: the attacks detect a memorising model and DP-SGD (Opacus) takes that away."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from fedinsight.privacy.membership import audit, loss_threshold_attack

LOSS = nn.CrossEntropyLoss(reduction="none")


def test_loss_threshold_attack_on_known_separations():
    rng = np.random.default_rng(0)
    perfect = loss_threshold_attack(np.zeros(50), np.ones(50))
    assert perfect.auc == 1.0 and perfect.advantage == 1.0
    same = rng.exponential(size=4_000)
    blind = loss_threshold_attack(same[:2_000], same[2_000:])
    assert abs(blind.auc - 0.5) < 0.04 and blind.advantage < 0.08
    # exponential losses with rates 2 (members) and 1: P(member loss < non-member loss) = 2/3
    shifted = loss_threshold_attack(rng.exponential(0.5, 20_000), rng.exponential(1.0, 20_000))
    assert abs(shifted.auc - 2 / 3) < 0.01


def _data(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy labels (20 % flipped): a big enough network can only fit them by memorising customers."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    x = torch.randn(n, d, generator=g)
    y = ((x @ w + 0.5 * torch.randn(n, generator=g)) > 0).long()
    flip = torch.rand(n, generator=g) < 0.2
    y[flip] = 1 - y[flip]
    return x, y


def _mlp(d: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))


def _train_plain(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = _mlp(x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            LOSS(model(x[i:i + 64]), y[i:i + 64]).mean().backward()
            opt.step()
    return model


def _train_dp(x: torch.Tensor, y: torch.Tensor, seed: int, epsilon: float = 3.0) -> nn.Module:
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    model = _mlp(x.shape[1])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        private, opt, loader = PrivacyEngine(accountant="rdp").make_private_with_epsilon(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5), data_loader=loader,
            target_epsilon=epsilon, target_delta=1e-5, epochs=30, max_grad_norm=1.0)
        for _ in range(30):
            for xb, yb in loader:
                if len(xb):
                    opt.zero_grad()
                    LOSS(private(xb), yb).mean().backward()
                    opt.step()
    return private._module


@pytest.mark.slow
def test_audit_detects_leakage_without_dp_and_not_with_dp_at_epsilon_3():
    torch.set_num_threads(1)
    x, y = _data(1_600, 20, seed=0)
    members, nonmembers, pool = (x[:400], y[:400]), (x[400:800], y[400:800]), (x[800:], y[800:])
    plain = {r.attack: r for r in audit(_train_plain(*members, 0), LOSS, members, nonmembers,
                                        train=_train_plain, pool=pool, shadows=2)}
    private = {r.attack: r for r in audit(_train_dp(*members, 0), LOSS, members, nonmembers,
                                          train=_train_dp, pool=pool, shadows=2)}
    for attack in ("loss-threshold", "shadow-model"):
        assert plain[attack].auc > 0.65, plain[attack]
        assert private[attack].auc < 0.58, private[attack]
        assert plain[attack].auc - private[attack].auc > 0.12

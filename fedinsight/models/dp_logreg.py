"""A logistic-regression propensity model trained with Opacus DP-SGD (no Flower in here).

It is the model the secure-aggregation path trains until the richer propensity models land; small on
purpose (one linear layer), so a SecAgg+ round is dominated by the protocol, not by training.

Privacy: every step Poisson-samples customers with probability ``sample_rate`` (Opacus's
:class:`~opacus.data_loader.DPDataLoader` built with exactly that rate, so the event the coordinator
charged — ``dpsgd_event(noise_multiplier, sample_rate, steps)`` — is the one that runs), clips each
customer's gradient to ``max_grad_norm`` and adds Gaussian noise. One row per customer: the privacy unit.
"""

from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def make_model(num_features: int) -> nn.Module:
    return nn.Linear(num_features, 1)


def get_weights(model: nn.Module) -> list[np.ndarray]:
    return [p.detach().cpu().numpy().astype(np.float64).copy() for p in model.state_dict().values()]


def set_weights(model: nn.Module, weights: list[np.ndarray]) -> None:
    keys = list(model.state_dict().keys())
    if len(keys) != len(weights):
        raise ValueError(f"model has {len(keys)} tensors, got {len(weights)} arrays")
    model.load_state_dict({k: torch.as_tensor(np.asarray(w), dtype=torch.float32) for k, w in zip(keys, weights,
                                                                                                  strict=True)})


@dataclass(frozen=True)
class DpSgdSettings:
    """What one partner runs per round; the coordinator charges exactly this."""

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    learning_rate: float = 0.5


def train_dp(model: nn.Module, x: np.ndarray, y: np.ndarray, settings: DpSgdSettings, *, seed: int | None = None
             ) -> float:
    """Run ``settings.steps`` DP-SGD steps on (x, y) in place; return the mean training loss seen."""
    from opacus import PrivacyEngine
    from opacus.data_loader import DPDataLoader

    # Batch sampling and noise come from generators seeded from OS entropy (``seed=None``, what partners use),
    # never from torch's global generator: anything in the process may have seeded that with a public run seed
    # (e.g. a model initialised with the job's seed), which would let the coordinator replay the batches.
    base = secrets.randbits(62) if seed is None else int(seed)
    dataset = torch.utils.data.TensorDataset(torch.as_tensor(x, dtype=torch.float32),
                                             torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1))
    loader = DPDataLoader(dataset, sample_rate=settings.sample_rate,
                          generator=torch.Generator().manual_seed(base))
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.learning_rate)
    engine = PrivacyEngine(accountant="rdp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about secure_mode=False: OpenDP-grade RNG is not needed here
        private_model, private_opt, private_loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=settings.noise_multiplier,
            max_grad_norm=settings.max_grad_norm, poisson_sampling=False,
            noise_generator=torch.Generator().manual_seed(base + 1),
        )
    loss_fn = nn.BCEWithLogitsLoss()
    losses: list[float] = []
    done = 0
    private_model.train()
    while done < settings.steps:
        for xb, yb in private_loader:
            done += 1  # an empty Poisson batch still counts: the charge is an upper bound on the steps released
            if not len(xb):
                continue
            private_opt.zero_grad()
            loss = loss_fn(private_model(xb), yb)
            loss.backward()
            losses.append(float(loss.detach()))
            private_opt.step()
            if done >= settings.steps:
                break
    # `make_private` wraps the module in place (hooks): remove them so `model` is a plain module again.
    private_model.remove_hooks()
    return float(np.mean(losses)) if losses else float("nan")


def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(model(torch.as_tensor(x, dtype=torch.float32))).numpy().ravel()

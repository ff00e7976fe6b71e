"""Propensity (buys again / churn) and LTV models: plain torch modules and their train/predict functions.

One network, two heads, so one DP-SGD run (one privacy cost) trains both:

- ``buy`` head: logit of buying again in the holdout window (churn is its complement);
- ``spend`` head: the standardised ``log1p`` spend *given* a purchase (trained on buyers only).

Expected LTV is the two-part product ``P(buy) x E[spend | buy]``; tiers (low / mid / high) come from
thresholds on it that the caller derives from (federated) quantiles. ``kind="logreg"`` makes both heads
linear (logistic regression + linear regression on the same features); ``kind="mlp"`` puts a small
shared MLP trunk under them.

Inputs are features already mapped to [0, 1] by public transforms and then standardised by one
:class:`SharedScaler` that every partner uses (fitted from federated sums, or from pooled data for the
centralized baseline). Nothing here knows about Flower.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedinsight.core.errors import ConfigError
from fedinsight.models.propensity_kinds import MODEL_KINDS

MLP_HIDDEN: tuple[int, ...] = (32, 16)
TARGET_CLIP = 3.0  # standardised spend target is clipped to +-3 so one buyer's gradient stays bounded
VAR_FLOOR = 1e-4  # smallest variance a noisy federated estimate may produce (unit-scale features)


class PropensityNet(nn.Module):
    """``forward(x) -> (buy_logit, spend_z)``, both of shape ``(batch,)``."""

    def __init__(self, n_features: int, kind: str = "logreg", hidden: Sequence[int] = MLP_HIDDEN) -> None:
        super().__init__()
        if kind not in MODEL_KINDS:
            raise ConfigError(f"unknown --model '{kind}', expected one of {', '.join(MODEL_KINDS)}")
        self.kind = kind
        layers: list[nn.Module] = []
        width = n_features
        if kind == "mlp":
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
        self.trunk = nn.Sequential(*layers)
        self.buy = nn.Linear(width, 1)
        self.spend = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.buy(h).squeeze(-1), self.spend(h).squeeze(-1)


def build_model(n_features: int, kind: str, seed: int) -> PropensityNet:
    """A freshly initialised model; the same seed gives the same weights everywhere."""
    torch.manual_seed(int(seed))
    return PropensityNet(n_features, kind)


def propensity_loss(model: nn.Module, batch: Sequence[torch.Tensor], ltv_weight: float = 0.5) -> torch.Tensor:
    """Mean over the batch of BCE(buy) + ``ltv_weight`` x buyer-only squared error on the spend target.

    ``batch = (x, buys_again, spend_z)``. Per-sample terms are averaged so Opacus's ``loss_reduction="mean"``
    applies.
    """
    x, y, z = batch
    logit, z_hat = model(x)
    bce = F.binary_cross_entropy_with_logits(logit, y, reduction="none")
    sq = y * (z_hat - z) ** 2
    return (bce + ltv_weight * sq).mean()


@dataclass(frozen=True)
class SharedScaler:
    """One standardisation for every partner: ``(unit_feature - mean) / std``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_sums(cls, n: float, sums: np.ndarray, sums_sq: np.ndarray, var_floor: float = VAR_FLOOR) -> SharedScaler:
        """From (possibly noisy) federated count, sums and sums of squares of unit-scale features.

        Noise can push the count or the variance to implausible values: the count is floored at 1,
        means are clipped to [0, 1] and variances floored at ``var_floor``.
        """
        n = max(float(n), 1.0)
        mean = np.clip(np.asarray(sums, float) / n, 0.0, 1.0)
        var = np.asarray(sums_sq, float) / n - mean**2
        std = np.sqrt(np.clip(var, var_floor, 0.25))  # a [0, 1] variable has variance <= 1/4
        return cls(tuple(map(float, mean)), tuple(map(float, std)))

    @classmethod
    def fit(cls, unit: np.ndarray) -> SharedScaler:
        """Exact, non-private fit on pooled data (the centralized baseline)."""
        unit = np.asarray(unit, float)
        return cls.from_sums(len(unit), unit.sum(0), (unit**2).sum(0))

    def transform(self, unit: np.ndarray) -> np.ndarray:
        return ((np.asarray(unit, float) - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)


@dataclass(frozen=True)
class TargetScaler:
    """``(unit_spend - mean) / std``: the spend head's target.

    ``std`` is a public constant, one ``log1p`` unit of money on the unit scale (``1 / log1p(cap)``), so
    the target is the buyer's log spend centred on the (noisy) federated mean. Estimating the spread
    from noisy sums of squares is not worth the budget: a wrong, tiny spread would saturate the target
    and let the spend head's gradients crowd out the buy head's under per-customer clipping.
    """

    mean: float
    std: float

    @classmethod
    def centred(cls, n: float, total: float, scale: float) -> TargetScaler:
        mean = float(np.clip(total / max(float(n), 1.0), 0.0, 1.0))
        return cls(mean, float(scale))

    def transform(self, unit_spend: np.ndarray) -> np.ndarray:
        z = (np.asarray(unit_spend, float) - self.mean) / self.std
        return np.clip(z, -TARGET_CLIP, TARGET_CLIP).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, float) * self.std + self.mean


def tensors(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.as_tensor(np.asarray(x, np.float32)), torch.as_tensor(np.asarray(y, np.float32)),
            torch.as_tensor(np.asarray(z, np.float32)))


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P(buy again), standardised spend-given-buy prediction)`` for standardised features ``x``."""
    model.eval()
    logit, z_hat = model(torch.as_tensor(np.asarray(x, np.float32)))
    return torch.sigmoid(logit).numpy().astype(float), z_hat.numpy().astype(float)


def fit_centralized(
    model: nn.Module, x: np.ndarray, y: np.ndarray, z: np.ndarray, *, epochs: int = 30, batch_size: int = 256,
    lr: float = 0.01, seed: int = 0,
) -> nn.Module:
    """Non-private training on pooled data (Adam, shuffled minibatches): the centralized baseline.

    Runs on one thread: for a model this small, torch's thread pool only adds synchronisation (and
    competes with the simulation's partners for the same cores).
    """
    data = tensors(x, y, z)
    n = len(data[0])
    generator = torch.Generator().manual_seed(int(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                optimizer.zero_grad()
                propensity_loss(model, [t[idx] for t in data]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model


def get_weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def set_weights(model: nn.Module, weights: dict[str, np.ndarray]) -> nn.Module:
    expected = model.state_dict()
    if set(weights) != set(expected):
        raise ConfigError(f"model weights have keys {sorted(weights)}, expected {sorted(expected)}")
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)).reshape(expected[k].shape) for k, v in weights.items()})
    return model


@dataclass(frozen=True)
class ModelBundle:
    """Everything needed to score customers later: weights plus the preprocessing they were trained with."""

    kind: str
    features: tuple[str, ...]
    weights: dict[str, np.ndarray]
    scaler: SharedScaler
    target: TargetScaler
    tier_thresholds: tuple[float, float]  # on expected LTV (money): (mid, high)
    config: dict[str, Any]  # window, caps, tier levels ... (plain JSON types)

    def model(self) -> PropensityNet:
        return set_weights(PropensityNet(len(self.features), self.kind), self.weights)

    def save(self, path: str | Path) -> None:
        payload = {
            "format": "fedinsight.propensity/1", "kind": self.kind, "features": list(self.features),
            "weights": {k: torch.as_tensor(v) for k, v in self.weights.items()},
            "scaler": asdict(self.scaler), "target": asdict(self.target),
            "tier_thresholds": list(self.tier_thresholds), "config": dict(self.config),
        }
        torch.save(payload, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"--model {path} does not exist (expected the model.pt a simulation wrote)")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises a variety of unpickling errors
            raise ConfigError(f"--model {path} is not a fedinsight propensity model ({exc})") from exc
        if not isinstance(payload, dict) or payload.get("format") != "fedinsight.propensity/1":
            raise ConfigError(f"--model {path} is not a fedinsight propensity model file")
        return cls(
            kind=str(payload["kind"]), features=tuple(payload["features"]),
            weights={k: v.numpy() for k, v in payload["weights"].items()},
            scaler=SharedScaler(tuple(payload["scaler"]["mean"]), tuple(payload["scaler"]["std"])),
            target=TargetScaler(float(payload["target"]["mean"]), float(payload["target"]["std"])),
            tier_thresholds=(float(payload["tier_thresholds"][0]), float(payload["tier_thresholds"][1])),
            config=dict(payload["config"]),
        )

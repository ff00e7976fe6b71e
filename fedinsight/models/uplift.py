"""The uplift model: one logistic head per campaign arm on the same inputs, trained with DP-SGD by the caller.

Why this shape: an uplift model must estimate, per customer, P(convert | offer) - P(convert | no offer). A
transformed-outcome regression needs the treatment share and has a high-variance target; here every arm has a
logistic head on the same basis (fixed hinges, or a shared hidden layer), and uplift is the difference of two heads'
probabilities. The heads can be written as ``base(x) + delta_a(x)`` (``delta_control = 0``: "shared") or as one head
per arm ("separate"): the same functions, so the non-private fit is the same, but under DP-SGD the separate form is
the better one -- without a hidden layer each customer's gradient touches one head (shorter, so less clipping at a
given norm; the uplift, a difference of two noisy heads, gets about as much noise as before), and the heads are not
coupled through a base (see :class:`UpliftNet`; measured in docs/uplift.md).
Each customer contributes one example (its own arm and label), so per-customer gradient clipping in DP-SGD bounds
its influence exactly as in the propensity model.

No Flower here: tensors in, a module out (``fedinsight.privacy.dpsgd`` trains it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

CENTRE = 0.5
"""Features arrive in [0, 1]; the model sees them centred on this public constant. Uncentred inputs make the bias
and the weights fight over the same direction, which plain (DP-)SGD with few steps resolves slowly."""


class Hinges(nn.Module):
    """A fixed (not learnt) piecewise-linear basis: each unit-scale feature, centred, and ``relu(x - k)`` at every
    public knot ``k``.

    Why: an offer's effect often changes slope or stops at a threshold (a discount that moves small baskets but not
    big ones, a gift that works from some spend on), which logistic heads on the raw features cannot bend to. A
    hidden layer can, but has ~8x the weights -- under DP-SGD every weight gets its own noise -- and Opacus's
    per-customer gradients of a hidden layer train ~6x slower. Hinges at fixed knots bend the same way with a
    handful of weights per feature and keep the model linear in its parameters.
    """

    def __init__(self, knots: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("knots", torch.as_tensor(knots, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - CENTRE
        if not self.knots.numel():
            return centred
        return torch.cat([centred, torch.relu(x[:, :, None] - self.knots).flatten(1)], dim=1)


class Tents(nn.Module):
    """A fixed piecewise-linear basis of local "tent" (hat) functions: for every unit-scale feature, one tent at
    each grid point of ``0``, the public knots and ``1``, rising linearly from 0 at the previous grid point to 1 at
    its own and falling back to 0 at the next (the end tents are flat beyond the ends; features stay in [0, 1]).

    Why: per feature it spans exactly the functions :class:`Hinges` spans with the bias (continuous, linear between
    the same knots), but each column is local -- a customer activates at most two tents per feature, with weights
    summing to 1 -- so the columns barely overlap, where hinge columns ``relu(x - k)`` overlap heavily (every
    customer past the last knot is past all of them). A nearly orthogonal basis is far better conditioned, and
    plain (DP-)SGD on a better-conditioned problem gets further in the same steps, which is what the noise-limited
    model lacks (docs/uplift.md). Each feature's tents sum to 1, so the bias is redundant; that costs nothing.
    """

    def __init__(self, knots: tuple[float, ...]) -> None:
        super().__init__()
        grid = torch.as_tensor((0.0, *knots, 1.0), dtype=torch.float64)
        inf = torch.tensor([math.inf], dtype=torch.float64)
        self.register_buffer("grid", grid.float(), persistent=False)
        # 1 / the distance to the previous and to the next grid point (0 at the ends: that side never falls)
        self.register_buffer("rise", (1.0 / torch.cat([inf, grid.diff()])).float(), persistent=False)
        self.register_buffer("fall", (1.0 / torch.cat([grid.diff(), inf])).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = x[:, :, None] - self.grid
        return torch.clamp(torch.minimum(1.0 + offset * self.rise, 1.0 - offset * self.fall), 0.0, 1.0).flatten(1)


BASES: tuple[str, ...] = ("hinge", "tent")
"""The fixed piecewise-linear bases at the public knots (the same functions, see :class:`Tents`)."""


def make_basis(basis: str, knots: tuple[float, ...]) -> tuple[nn.Module, int]:
    """The basis module and how many columns it gives per feature."""
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, not {basis!r}")
    if basis == "tent":
        return Tents(tuple(knots)), len(knots) + 2
    return Hinges(tuple(knots)), len(knots) + 1


HEADS: tuple[str, ...] = ("shared", "separate")
"""How the arms' logits are parametrised (the same functions either way, see :class:`UpliftNet`)."""


class UpliftNet(nn.Module):
    """Logits of every arm (column 0 = the control arm) for unit-scale features; ``knots`` adds a fixed
    piecewise-linear basis of every feature (``basis``: :class:`Hinges` or :class:`Tents`), ``hidden`` > 0 one ReLU
    layer shared by all heads.

    ``heads``: ``"shared"`` is ``base(x) + delta_arm(x)`` (``delta_control = 0``); ``"separate"`` gives every arm its
    own logistic head on the same basis. Both describe exactly the same set of functions (``base`` = the control's
    head, ``delta`` = an offer's head minus it), so the centralized optimum is the same; what differs is DP-SGD on
    them. With shared heads a treated customer's gradient lands on the base *and* its offer's head (its norm is
    sqrt(2) times larger, so more customers are clipped or the clipping norm, and the noise, must be larger), and
    base and heads are coupled: the direction that moves the control's logit against the offers' converges about
    four times slower than the others. Separate heads touch one head per customer and are decoupled.
    """

    def __init__(self, n_features: int, n_arms: int, hidden: int = 0, knots: tuple[float, ...] = (),
                 heads: str = "shared", basis: str = "hinge") -> None:
        super().__init__()
        if heads not in HEADS:
            raise ValueError(f"heads must be one of {HEADS}, not {heads!r}")
        self.basis, per_feature = make_basis(basis, tuple(knots))
        width = n_features * per_feature
        self.trunk: nn.Module = nn.Sequential(nn.Linear(width, hidden), nn.ReLU()) if hidden else nn.Identity()
        width = hidden or width
        self.separate = heads == "separate"
        if self.separate:
            self.arm_heads = nn.Linear(width, n_arms)
            with torch.no_grad():  # every arm starts from the control's head: "no offer changes anything"
                self.arm_heads.weight.copy_(self.arm_heads.weight[:1].expand(n_arms, -1).clone())
                self.arm_heads.bias.fill_(float(self.arm_heads.bias[0]))
        else:
            self.base = nn.Linear(width, 1)
            self.delta = nn.Linear(width, n_arms - 1)
            nn.init.zeros_(self.delta.weight)  # start from "no offer changes anything"
            nn.init.zeros_(self.delta.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(self.basis(x))
        if self.separate:
            return self.arm_heads(h)
        base = self.base(h)
        return torch.cat([base, base + self.delta(h)], dim=1)


def build_model(n_features: int, n_arms: int, hidden: int, seed: int, knots: tuple[float, ...] = (),
                heads: str = "shared", basis: str = "hinge") -> UpliftNet:
    """The initial model every partner starts from (public seed: it holds no data)."""
    torch.manual_seed(seed)
    return UpliftNet(n_features, n_arms, hidden, knots, heads, basis)


def uplift_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean log loss of each customer's own arm's head on its conversion label."""
    x, arm, y = batch
    chosen = model(x).gather(1, arm.long().view(-1, 1)).squeeze(1)
    return nn.functional.binary_cross_entropy_with_logits(chosen, y, reduction="mean")


def tensors(x: np.ndarray, arm: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.as_tensor(np.asarray(x, dtype=np.float32)), torch.as_tensor(np.asarray(arm, dtype=np.int64)),
            torch.as_tensor(np.asarray(y, dtype=np.float32)))


@torch.no_grad()
def arm_probabilities(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """P(convert | arm) for every customer (rows) and arm (columns, control first)."""
    model.eval()
    return torch.sigmoid(model(torch.as_tensor(np.asarray(x, dtype=np.float32)))).numpy().astype(float)


def predicted_uplift(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Each offer's predicted change in conversion probability against the control arm (rows x offers)."""
    p = arm_probabilities(model, x)
    return p[:, 1:] - p[:, :1]


def moving_average(previous: dict[str, np.ndarray] | None, current: dict[str, np.ndarray],
                   decay: float) -> dict[str, np.ndarray]:
    """The exponential moving average of the global models, which is what a job releases: averaging DP iterates
    cancels part of their noise for free (post-processing), and the offer policy reads the uplift's size as money."""
    if previous is None:
        return {k: np.asarray(v, dtype=np.float64) for k, v in current.items()}
    return {k: decay * previous[k] + (1.0 - decay) * np.asarray(current[k], dtype=np.float64) for k in current}


def tail_start(rounds: int, tail: float) -> int:
    """The first round whose global model enters a tail average over the last ``tail`` share of ``rounds`` (at
    least the last round); 0 means no tail average (the moving average over every round)."""
    if tail <= 0:
        return 0
    return rounds - max(1, round(tail * rounds)) + 1


class ReleasedAverage:
    """The model a job releases, from the global model after each round (post-processing of DP releases: free in
    privacy): with ``tail`` > 0 the plain mean of the last ``tail`` share of the rounds' models ("tail averaging":
    late DP-SGD iterates scatter around the optimum with independent noise, and their mean cancels it), else the
    moving average with decay ``decay`` over every round."""

    def __init__(self, rounds: int, decay: float, tail: float = 0.0) -> None:
        self.decay = decay
        self.start = tail_start(rounds, tail)
        self.count = 0
        self.value: dict[str, np.ndarray] | None = None

    def add(self, server_round: int, weights: dict[str, np.ndarray]) -> None:
        """Take in the global model after round ``server_round`` (1-based)."""
        if not self.start:
            self.value = moving_average(self.value, weights, self.decay)
        elif server_round >= self.start:
            self.count += 1
            self.value = moving_average(self.value, weights, 1.0 - 1.0 / self.count)


def get_weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def set_weights(model: nn.Module, weights: dict[str, np.ndarray]) -> nn.Module:
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in weights.items()})
    return model


def fit_centralized(x: np.ndarray, arm: np.ndarray, y: np.ndarray, n_arms: int, *, hidden: int = 0, seed: int = 0,
                    epochs: int = 400, lr: float = 0.05, knots: tuple[float, ...] = (),
                    heads: str = "shared", basis: str = "hinge") -> UpliftNet:
    """The non-private reference: the same model on pooled customers, full-batch Adam (simulations only)."""
    model = build_model(x.shape[1], n_arms, hidden, seed, knots, heads, basis)
    data = tensors(x, arm, y)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = uplift_loss(model, data)
        loss.backward()
        optimizer.step()
    return model

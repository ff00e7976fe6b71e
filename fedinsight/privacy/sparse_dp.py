"""Customer-level DP-SGD for sparse updates (embedding tables), without per-sample gradient hooks.

Why not Opacus's ``GradSampleModule`` here: its hooks materialise a dense (batch x vocabulary x dim)
per-sample gradient for every ``nn.Embedding``, ~220x slower than plain SGD on a recommender (see
DESIGN.md). A customer's gradient on an item table is *sparse*: it touches only the rows of the items
in that customer's interactions (and sampled negatives). So we compute each customer's contribution
as a list of (row, value) pairs, clip it as a whole, sum, and add dense Gaussian noise — the same
mechanism Opacus's ``DPOptimizer`` runs, with Opacus's own noise generator and RDP accountant.

The privacy unit is one customer with *all* of their interactions. Why the sensitivity bound holds:

* every contribution row carries the id of the customer (``unit``) it comes from; rows of one customer
  that hit the same parameter row are first summed, so the customer's whole contribution to the
  parameter table is one sparse vector ``g_u`` (item embeddings and item biases together);
* ``g_u`` is scaled by ``min(1, C / ||g_u||_2)``, so ``||clip(g_u)||_2 <= C`` however many
  interactions the customer has — adding or removing a customer (add/remove adjacency) changes the
  sum by at most ``C`` in L2;
* the sum gets ``N(0, (sigma C)^2)`` noise on *every* coordinate of the table (also rows no customer
  touched: which rows are touched is itself private), so each step is the Gaussian mechanism with
  noise multiplier ``sigma``; customers are Poisson-sampled at rate ``q`` per step, so a step is a
  Poisson-subsampled Gaussian — the event Opacus's RDP accountant and ``dp_accounting`` compose;
* anything computed only from one customer's own rows and released parameters — that customer's own
  embedding — never leaves the partner, so it costs nothing (the "billboard" model: the item table is
  the billboard every customer reads; see docs/recommender.md).

Weight decay and the learning rate act on the noisy sum and on all rows alike, i.e. post-processing.
Noise comes from a generator seeded by the operating system, never from the run seed (the coordinator
knows the seed and could otherwise subtract the noise).
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass, field

import torch
from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.ledger import compose_epsilon, dpsgd_event


@dataclass(frozen=True)
class ClippedSum:
    """The clipped (not yet noised) sum of a batch's per-customer contributions."""

    total: torch.Tensor  # (num_rows, width)
    units: int  # customers in the batch
    clipped_fraction: float  # share of them whose contribution was scaled down
    mean_norm: float  # their mean pre-clipping L2 norm (to tune C; stays on the partner)


def clip_per_unit(units: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, num_rows: int,
                  clip: float) -> ClippedSum:
    """Sum of per-unit contributions, each unit's whole contribution clipped to L2 norm ``clip``.

    ``units[n]`` is the customer of contribution row ``n``, ``rows[n]`` the parameter row it adds
    ``values[n]`` (a vector of the table's width) to. Repeated (unit, row) pairs are coalesced before
    the norm is taken, so the norm is the norm of the customer's actual gradient.
    """
    if not (clip > 0 and math.isfinite(clip)):
        raise ConfigError(f"clipping norm must be a positive number (got {clip})")
    if values.ndim != 2 or len(values) != len(units) or len(units) != len(rows):
        raise ConfigError("units, rows and values must describe the same contribution rows")
    width = values.shape[1]
    if len(units) == 0:
        return ClippedSum(torch.zeros(num_rows, width, dtype=values.dtype), 0, 0.0, 0.0)
    key = units.to(torch.int64) * num_rows + rows.to(torch.int64)
    uniq, inverse = torch.unique(key, return_inverse=True)
    coalesced = torch.zeros(len(uniq), width, dtype=values.dtype).index_add_(0, inverse, values)
    unit_of = torch.div(uniq, num_rows, rounding_mode="floor")
    row_of = uniq - unit_of * num_rows
    local_units, unit_pos = torch.unique(unit_of, return_inverse=True)
    sq = torch.zeros(len(local_units), dtype=values.dtype).index_add_(0, unit_pos, (coalesced**2).sum(dim=1))
    norms = sq.sqrt()
    factor = torch.clamp(clip / (norms + 1e-12), max=1.0)
    total = torch.zeros(num_rows, width, dtype=values.dtype).index_add_(0, row_of, coalesced * factor[unit_pos, None])
    return ClippedSum(total, len(local_units), float((factor < 1.0).float().mean()), float(norms.mean()))


DENSE_LIMIT = 4_000_000  # units x rows below which the rank-one clipping uses a dense scratch matrix


def clip_per_unit_rank_one(units: torch.Tensor, rows: torch.Tensor, coef: torch.Tensor, unit_vectors: torch.Tensor,
                           num_rows: int, clip: float) -> ClippedSum:
    """:func:`clip_per_unit` for contributions of the form ``coef[n] * unit_vectors[units[n]]``.

    A matrix-factorisation gradient has this shape: every row a customer adds to the item table is a
    multiple of that customer's own vector (embedding and bias slot). So a customer's contribution is
    the outer product ``c_u x v_u`` of its coalesced coefficients over rows and its vector, with norm
    ``||c_u|| ||v_u||``: the same clipping as :func:`clip_per_unit`, computed on scalars. ``units``
    index the rows of ``unit_vectors`` (one per customer of the batch). For a batch of U customers the
    coefficients are gathered in a dense (U x rows) matrix when it is small — no sort, and the clipped
    sum is one matrix product — and coalesced by sorting otherwise.
    """
    if not (clip > 0 and math.isfinite(clip)):
        raise ConfigError(f"clipping norm must be a positive number (got {clip})")
    num_units, width = unit_vectors.shape
    present = torch.bincount(units.to(torch.int64), minlength=num_units) > 0
    if len(units) == 0:
        return ClippedSum(torch.zeros(num_rows, width, dtype=unit_vectors.dtype), 0, 0.0, 0.0)
    vector_norms = unit_vectors.norm(dim=1)
    if num_units * num_rows <= DENSE_LIMIT:
        dense = torch.zeros(num_units, num_rows, dtype=coef.dtype)
        dense.index_put_((units.to(torch.int64), rows.to(torch.int64)), coef, accumulate=True)
        norms = dense.norm(dim=1) * vector_norms
        factor = torch.clamp(clip / (norms + 1e-12), max=1.0)
        total = (dense * factor[:, None]).T @ unit_vectors
    else:
        key = units.to(torch.int64) * num_rows + rows.to(torch.int64)
        uniq, inverse = torch.unique(key, return_inverse=True)
        c = torch.zeros(len(uniq), dtype=coef.dtype).index_add_(0, inverse, coef)
        unit_of = torch.div(uniq, num_rows, rounding_mode="floor")
        coef_sq = torch.zeros(num_units, dtype=coef.dtype).index_add_(0, unit_of, c * c)
        norms = coef_sq.sqrt() * vector_norms
        factor = torch.clamp(clip / (norms + 1e-12), max=1.0)
        scaled = (c * factor[unit_of])[:, None] * unit_vectors[unit_of]
        total = torch.zeros(num_rows, width, dtype=unit_vectors.dtype).index_add_(0, uniq - unit_of * num_rows,
                                                                                   scaled)
    clipped = factor[present] < 1.0
    return ClippedSum(total, int(present.sum()), float(clipped.float().mean()), float(norms[present].mean()))


def noise_generator(seed: int | None = None) -> torch.Generator:
    """A torch generator for DP noise; OS entropy unless a seed is given (tests only)."""
    gen = torch.Generator()
    gen.manual_seed(secrets.randbits(63) if seed is None else seed)
    return gen


def add_gaussian_noise(total: torch.Tensor, noise_multiplier: float, clip: float,
                       generator: torch.Generator, *, secure_mode: bool = True) -> torch.Tensor:
    """``total`` + N(0, (noise_multiplier * clip)^2) on every coordinate, drawn by Opacus's generator code.

    ``secure_mode`` uses Opacus's floating-point-attack-resistant sampling (four draws averaged).
    """
    from opacus.optimizers.optimizer import _generate_noise

    if noise_multiplier < 0 or not math.isfinite(noise_multiplier):
        raise ConfigError(f"noise multiplier must be a finite number >= 0 (got {noise_multiplier})")
    return total + _generate_noise(noise_multiplier * clip, total, generator=generator, secure_mode=secure_mode)


# --- calibration and accounting ------------------------------------------------------------------

def noise_multiplier_for(epsilon: float, delta: float, sample_rate: float, steps: int,
                         *, prior: list[dp_event.DpEvent] | None = None, accountant: str = "rdp",
                         tolerance: float = 0.005) -> float:
    """The smallest noise multiplier whose ``steps`` Poisson-subsampled Gaussian steps, composed after
    the ``prior`` events of the same job, stay within (epsilon, delta) — by the same accountant the
    privacy ledger charges with, so the charge fits."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(f"--epsilon must be a positive number (got {epsilon}); use inf for no DP")
    if not 0 < delta < 1:
        raise ConfigError(f"--delta must be in (0, 1) (got {delta})")
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"sample rate must be in (0, 1] (got {sample_rate})")
    if steps < 1:
        raise ConfigError(f"DP-SGD needs at least one step (got {steps})")

    def eps(sigma: float) -> float:
        # dp_accounting logs a warning for every RDP order it skips at small sigma: noise, not news
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.ERROR)
        try:
            return compose_epsilon([*(prior or []), dpsgd_event(sigma, sample_rate, steps)], delta, accountant)
        finally:
            absl.setLevel(level)

    low, high = 0.0, 1.0
    while eps(high) > epsilon:
        low, high = high, high * 2
        if high > 1e5:
            raise ConfigError(f"epsilon {epsilon} is unreachable with {steps} steps at sample rate {sample_rate} "
                              "(or the job's other releases already spend it)")
    while high - low > tolerance * high:
        mid = (low + high) / 2
        if eps(mid) > epsilon:
            low = mid
        else:
            high = mid
    return high


@dataclass
class CustomerLevelAccountant:
    """Opacus's RDP accountant for one partner's DP-SGD steps, kept across rounds.

    ``history`` is Opacus's own ``(noise_multiplier, sample_rate, steps)`` list, so it can be stored
    with the partner's state between rounds and restored: epsilon is cumulative over the whole job,
    not per round (Flower's example builds a new PrivacyEngine per round; we do not).
    """

    history: list[tuple[float, float, int]] = field(default_factory=list)

    def step(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        if steps <= 0:
            return
        if self.history and self.history[-1][:2] == (noise_multiplier, sample_rate):
            sigma, q, n = self.history[-1]
            self.history[-1] = (sigma, q, n + steps)
        else:
            self.history.append((float(noise_multiplier), float(sample_rate), int(steps)))

    def epsilon(self, delta: float) -> float:
        from opacus.accountants import RDPAccountant

        if not self.history:
            return 0.0
        acc = RDPAccountant()
        acc.history = [tuple(h) for h in self.history]
        return float(acc.get_epsilon(delta=delta))

    def events(self) -> list[dp_event.DpEvent]:
        """The same steps as ``dp_accounting`` events (what the ledger records)."""
        return [dpsgd_event(sigma, q, n) for sigma, q, n in self.history]

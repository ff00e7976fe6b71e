"""Distributed noise for insights (``noise-model = distributed-secagg``): each partner adds a share of the noise.

Why: with local noise every one of K partners adds the full Gaussian noise N(0, (z L2)^2) to each query's
vector, because the coordinator sees every partner's vector; the sum then carries K times the variance
the guarantee needs. Under SecAgg+ the coordinator sees only the sum, so each partner adds a
discrete-Gaussian *share* and the sum carries (about) the noise of one Gaussian release at the same
multiplier ``z``: the noise sd falls by about sqrt(K) at the same epsilon.

The maths is :mod:`fedinsight.privacy.distributed_dp`'s (Kairouz, Liu & Steinke 2021), applied to a
batch of queries sent as one SecAgg+ vector. SecAgg+ has one grid for the whole vector (one clipping
range R and one quantisation Q), while the queries differ in sensitivity and noise; so each query's
vector ``x_q`` is sent in its own *block*, divided by its declared L2 bound: ``y_q = x_q / L2_q`` has
per-customer L2 sensitivity 1, and every coordinate of a partner's ``y_q`` lies in [0, N_max]
(|x_i| <= ||x||_2 <= L2 for one customer). One R then covers every block, and block q is exactly a
:class:`~fedinsight.privacy.distributed_dp.DistributedNoise` with clip 1, noise multiplier ``z_q`` (what
local mode uses, and what the ledger charges), the shared R and Q, and ``d_q`` coordinates.

Rounding onto the grid raises a block's sensitivity to ``C'_q = 1 + sqrt(d_q) Delta`` (the noise is
calibrated to ``C'_q``, so the guarantee holds exactly at ``z_q``); the encoding is refused when that
inflation exceeds :data:`MAX_INFLATION` (fewer partners or a smaller ``--max-customers`` make the grid finer).

``N_max`` (``--max-customers``) is a *public* bound chosen by the job, not a partner's count: a partner
with more customers refuses the round (it never clips). ``shares`` = honest partners - tolerated drop-outs:
the trust model is that at least ``honest`` partners do not collude with the coordinator and at most
``max_dropouts`` of them drop out of a round, so the sum always holds at least ``shares`` secret shares of
variance ``(z C')^2 / shares`` each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedinsight.core.errors import ConfigError
from fedinsight.federation.secagg import shares_of as shares_of  # the trust model is shared by every task
from fedinsight.federation.secagg import trust_text as trust_text
from fedinsight.privacy.distributed_dp import (
    MAX_QUANTIZATION,
    MODULUS,
    OVERFLOW_BUDGET,
    TAU_LIMIT,
    DistributedNoise,
    decode_sum,
    encode_noisy_share,
)

NOISE_MODELS = ("local", "distributed-secagg")
MECHANISM = "discrete-gaussian+secagg"
"""The manifest's and ledger's name of a distributed-noise release."""
MAX_INFLATION = 1.5
"""Largest allowed C'/C of a block (the extra noise that rounding onto the SecAgg+ grid costs)."""
DEFAULT_MAX_CUSTOMERS = 1_000_000


@dataclass(frozen=True)
class Block:
    """One query's part of the SecAgg+ vector (all public: the batch's layout and price)."""

    name: str
    coordinates: int  # d_q
    multiplier: float  # z_q: the query's Gaussian noise multiplier
    l2: float  # the query's declared per-customer L2 bound


@dataclass(frozen=True)
class InsightsEncoding:
    """One batch's distributed-noise encoding; partner and coordinator each derive it from public numbers."""

    partners: int  # K
    shares: int  # noise shares the sum is guaranteed to hold (honest - max_dropouts)
    max_customers: int  # N_max, a public bound per partner
    blocks: tuple[Block, ...]
    quantization: int  # Q
    clipping_range: float  # R

    @classmethod
    def for_batch(cls, blocks: Sequence[Block], *, partners: int, shares: int, max_customers: int) -> InsightsEncoding:
        """Q: the largest power of two with K Q < 2^32; R: a power of two covering N_max and the noise tails."""
        if partners < 2:
            raise ConfigError("distributed noise needs at least 2 partners (secure aggregation sums two or more)")
        if not 1 <= shares <= partners:
            raise ConfigError(f"noise shares (honest partners - tolerated drop-outs) must be between 1 and {partners}, "
                              f"got {shares}")
        if max_customers < 1:
            raise ConfigError("--max-customers must be a positive bound on each partner's customers")
        if not blocks:
            raise ConfigError("a distributed-noise batch needs at least one query")
        for b in blocks:
            if not (b.coordinates >= 1 and b.l2 > 0 and math.isfinite(b.l2) and b.multiplier > 0
                    and math.isfinite(b.multiplier)):
                raise ConfigError(f"query '{b.name}' cannot be encoded (coordinates {b.coordinates}, L2 {b.l2}, "
                                  f"multiplier {b.multiplier})")
        quant = min(2 ** math.floor(math.log2((MODULUS - 1) / partners)), MAX_QUANTIZATION)
        if quant < 2**16:
            raise ConfigError(f"{partners} partners leave too few quantisation levels in a 2^32 modulus")
        # as DistributedNoise.for_job: the tail bound uses the share sd with C' <= MAX_INFLATION
        coordinates = sum(b.coordinates for b in blocks)
        tails = math.sqrt(2.0 * math.log(2.0 * coordinates * partners / OVERFLOW_BUDGET))
        widest = max(b.multiplier for b in blocks) * MAX_INFLATION / math.sqrt(shares)
        r = float(2.0 ** math.ceil(math.log2(max_customers + tails * widest)))
        enc = cls(partners, shares, max_customers, tuple(blocks), quant, r)
        for b in enc.blocks:
            noise = enc.noise(b.name)
            if noise.sensitivity > MAX_INFLATION:
                raise ConfigError(f"query '{b.name}' ({b.coordinates} numbers) is too large for the SecAgg+ grid of "
                                  f"{partners} partners and --max-customers {max_customers}: rounding would add "
                                  f"{noise.sensitivity - 1:.0%} noise; lower --max-customers or use local noise")
            if noise.tau > TAU_LIMIT:
                raise ConfigError(f"query '{b.name}': the distributed discrete Gaussian's tau {noise.tau:.3g} is not "
                                  "negligible")
        if enc.overflow_probability > OVERFLOW_BUDGET:
            raise ConfigError(f"the SecAgg+ range overflows with probability {enc.overflow_probability:.2g}")
        return enc

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.name == name:
                return b
        raise ConfigError(f"query '{name}' is not in this batch's encoding")

    def noise(self, name: str) -> DistributedNoise:
        """Block ``name`` as one :class:`DistributedNoise` (clip 1: its vector is divided by its L2 bound)."""
        b = self.block(name)
        return DistributedNoise(self.partners, self.shares, b.multiplier, 1.0, self.max_customers, b.coordinates, 1,
                                self.quantization, self.clipping_range)

    @property
    def step(self) -> float:
        return 2.0 * self.clipping_range / self.quantization

    @property
    def overflow_probability(self) -> float:
        return min(1.0, sum(self.noise(b.name).overflow_probability for b in self.blocks))

    def inflation(self, name: str) -> float:
        """C'/C of block ``name``: how much more noise than local mode's per-share calibration rounding costs."""
        return self.noise(name).sensitivity

    def sum_noise_sd(self, name: str, contributors: int | None = None) -> float:
        """Noise sd per coordinate of the sum of ``contributors`` shares, in the query's units (x, not y)."""
        n = self.partners if contributors is None else contributors
        noise = self.noise(name)
        return noise.noise_multiplier * noise.sensitivity * math.sqrt(n / self.shares) * self.block(name).l2

    def flower_settings(self) -> dict[str, float | int]:
        """What ``SecAggPlusWorkflow`` must be configured with for the encoding to be exact."""
        return {"clipping_range": self.clipping_range, "quantization_range": self.quantization,
                "modulus_range": MODULUS}

    def encode(self, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
        """Partner side: every query's exact vector / L2, rounded, plus this partner's discrete-Gaussian share,
        concatenated in block order (OpenDP's exact sampler; refused, never clipped, if out of range)."""
        out = []
        for b in self.blocks:
            x = np.asarray(vectors[b.name], dtype=np.float64).ravel()
            if x.size != b.coordinates:
                raise ConfigError(f"query '{b.name}' has {x.size} numbers, the batch's layout {b.coordinates}")
            out.append(encode_noisy_share(x / b.l2, self.noise(b.name)))
        return np.concatenate(out)

    def decode(self, mean: np.ndarray, contributors: int) -> dict[str, np.ndarray]:
        """Coordinator side: the exact grid sum from Flower's average of the unmasked vectors, per query, in the
        query's units (post-processing of the release)."""
        flat = np.asarray(mean, dtype=np.float64).ravel()
        size = sum(b.coordinates for b in self.blocks)
        if flat.size != size:
            raise ConfigError(f"the secure sum has {flat.size} numbers, the batch's encoding {size}")
        total = decode_sum(flat, contributors, self.noise(self.blocks[0].name))
        out, offset = {}, 0
        for b in self.blocks:
            out[b.name] = total[offset:offset + b.coordinates] * b.l2
            offset += b.coordinates
        return out

    def as_dict(self) -> dict[str, Any]:
        """For summary.json: the grid and, per query, the rounding inflation and the sum's noise sd."""
        return {"partners": self.partners, "noise_shares": self.shares, "max_customers": self.max_customers,
                "clipping_range": self.clipping_range, "quantization_range": self.quantization,
                "modulus_range": MODULUS, "grid_step": self.step,
                "overflow_probability": self.overflow_probability,
                "queries": {b.name: {"inflation": round(self.inflation(b.name), 6),
                                     "tau": self.noise(b.name).tau,
                                     "share_sd": round(self.noise(b.name).share_scale * self.step * b.l2, 6)}
                            for b in self.blocks}}


def blocks_of(names: Sequence[str], lengths: Mapping[str, int], multipliers: Mapping[str, float],
              l2: Mapping[str, float]) -> list[Block]:
    """The batch's blocks, in query order."""
    return [Block(n, int(lengths[n]), float(multipliers[n]), float(l2[n])) for n in names]


LOCAL_TRUST = "local noise: every partner adds the full Gaussian noise to its own vector (no trust in anyone needed)"

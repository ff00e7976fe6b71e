"""Distributed noise for secure aggregation: each partner adds a share of the noise, only the sum is seen.

Why: with per-partner ("local") noise every one of K partners adds N(0, (sigma C)^2) to its clipped
update because the coordinator sees each update; the sum then carries K times the variance the
privacy guarantee needs. Under SecAgg+ the coordinator sees only the sum, so each partner adds a
share with variance (sigma C)^2 / K_h and the sum of the K_h partners assumed honest carries the
full (sigma C)^2 — sqrt(K) less noise at the same epsilon when K_h = K.

SecAgg+ works on integers modulo M = 2^32, so the encoding must be exact, or the sensitivity argument
breaks after quantisation. The chain, for one step:

1. every customer's contribution is clipped to L2 norm ``C`` (:mod:`fedinsight.privacy.sparse_dp`);
   the partner's clipped sum ``S`` has every coordinate in [-N_max C, N_max C];
2. ``S`` is rounded to the grid ``Delta = 2R / Q`` (deterministic round-to-nearest). For neighbouring
   data ``||round(S) - round(S')||_2 <= ||S - S'||_2 + sqrt(d) Delta``: the sensitivity becomes
   ``C' = C + sqrt(d) Delta`` (d = coordinates of the table), and the noise is calibrated to ``C'``;
3. the partner adds *discrete* Gaussian noise on the grid (OpenDP's exact sampler) with
   ``s^2 = sigma^2 C'^2 / (K_h Delta^2)`` grid units, so its vector is an exact grid point;
4. Flower's SecAgg+ quantiser maps x to ``(x + R) Q / (2R)`` — with R and Q powers of two that is an
   exact integer, so its stochastic rounding never fires and nothing is clipped as long as every
   coordinate lies in [-R, R] (checked: a vector outside the range is refused, never clipped);
   the masked sum is exact as long as ``K Q < M`` (checked when the encoding is built);
5. the sum of K_h independent discrete Gaussians is, up to ``tau`` (Kairouz, Liu & Steinke 2021,
   "The Distributed Discrete Gaussian Mechanism", Thm. 12), a discrete Gaussian of variance
   ``sigma^2 C'^2 / Delta^2``, and a discrete Gaussian satisfies the same Renyi/zCDP bound as the
   continuous one (Canonne, Kamath & Steinke 2020). ``tau`` is computed and must be below 1e-12.
   Because that equivalence is proven for full-batch (not Poisson-subsampled) releases, the
   distributed mode runs full batch (sample rate 1): each round is one Gaussian release, and the
   ledger's ``dpsgd_event(sigma, 1, rounds)`` is exactly that composition.

R is chosen from public numbers only (N_max, C, the noise scale), large enough that noise pushes a
coordinate out of range with probability below ``OVERFLOW_BUDGET`` over the whole job (a refused
round is then the only data-dependent event, with that probability; it is far below delta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedinsight.core.errors import ConfigError, SecureAggregationError
from fedinsight.privacy.mechanisms import _opendp

MODULUS = 2**32  # Flower's SecAgg+ modulus (its maximum)
MAX_QUANTIZATION = 2**30  # Flower casts quantised values to int32
OVERFLOW_BUDGET = 1e-12  # probability that noise pushes any coordinate of any round out of range
TAU_LIMIT = 1e-12


def _pow2_at_least(x: float) -> float:
    return float(2.0 ** math.ceil(math.log2(max(x, 2.0**-30))))


@dataclass(frozen=True)
class DistributedNoise:
    """The public parameters of one job's distributed-noise encoding (every partner recomputes them)."""

    partners: int  # K: partners whose vectors enter each sum
    honest: int  # K_h: partners assumed honest (not colluding with the coordinator)
    noise_multiplier: float  # sigma of the *sum*
    clip: float  # C, per customer
    max_customers: int  # N_max: the largest partner's customer count (public, as in DP-SGD)
    coordinates: int  # d: size of the released vector
    rounds: int
    quantization: int  # Q (power of two)
    clipping_range: float  # R (power of two)

    @classmethod
    def for_job(cls, *, partners: int, honest: int, noise_multiplier: float, clip: float, max_customers: int,
                coordinates: int, rounds: int, max_inflation: float = 1.01) -> DistributedNoise:
        """Choose Q (largest power of two with K Q < M) and R (power of two covering signal + noise tails).

        ``max_inflation``: the largest C'/C accepted (the extra noise rounding onto the grid costs); a model update
        keeps the default 1 %, a small statistics vector may accept more (its noise is calibrated to C' anyway)."""
        if partners < 2:
            raise ConfigError("distributed noise needs at least 2 partners (secure aggregation sums two or more)")
        if not 1 <= honest <= partners:
            raise ConfigError(f"--honest-partners must be between 1 and --partners ({partners}), got {honest}")
        if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
            raise ConfigError(f"distributed noise needs a positive noise multiplier (got {noise_multiplier})")
        quant = 2 ** math.floor(math.log2((MODULUS - 1) / partners))
        quant = min(quant, MAX_QUANTIZATION)
        if quant < 2**16:
            raise ConfigError(f"{partners} partners leave too few quantisation levels in a 2^32 modulus")
        # the tail bound needs the noise scale, which needs Delta, which needs R: start from C' <= 1.01 C
        share_std = noise_multiplier * clip * max_inflation / math.sqrt(honest)
        tails = math.sqrt(2.0 * math.log(2.0 * coordinates * rounds * partners / OVERFLOW_BUDGET))
        r = _pow2_at_least(max_customers * clip + tails * share_std)
        enc = cls(partners, honest, noise_multiplier, clip, max_customers, coordinates, rounds, quant, r)
        if enc.sensitivity > max_inflation * clip:
            raise ConfigError(f"the SecAgg+ grid is too coarse for {coordinates} coordinates "
                              f"(sensitivity {enc.sensitivity:.4g} vs clip {clip}); use fewer partners or a smaller "
                              "model")
        if enc.tau > TAU_LIMIT:
            raise ConfigError(f"the distributed discrete Gaussian's tau {enc.tau:.3g} is not negligible")
        return enc

    @property
    def step(self) -> float:
        """Delta: the grid SecAgg+ represents exactly."""
        return 2.0 * self.clipping_range / self.quantization

    @property
    def sensitivity(self) -> float:
        """C' = C + sqrt(d) Delta: one customer's L2 effect on the rounded sum."""
        return self.clip + math.sqrt(self.coordinates) * self.step

    @property
    def share_scale(self) -> float:
        """Each partner's discrete-Gaussian scale, in grid units."""
        return self.noise_multiplier * self.sensitivity / (math.sqrt(self.honest) * self.step)

    @property
    def sum_noise_std(self) -> float:
        """Standard deviation per coordinate of the noise in the sum of all K partners (float units)."""
        return self.noise_multiplier * self.sensitivity * math.sqrt(self.partners / self.honest)

    @property
    def tau(self) -> float:
        """Kairouz-Liu-Steinke's distance of a sum of K_h discrete Gaussians from one discrete Gaussian."""
        s2 = self.share_scale**2
        return 10.0 * sum(math.exp(-2 * math.pi**2 * s2 * k / (k + 1)) for k in range(1, self.honest))

    @property
    def overflow_probability(self) -> float:
        """Union bound: noise pushes a coordinate past R in some round of some partner."""
        margin = (self.clipping_range - self.max_customers * self.clip) / (self.share_scale * self.step)
        return min(1.0, 2 * self.coordinates * self.rounds * self.partners * math.exp(-margin**2 / 2))

    def flower_settings(self) -> dict[str, float | int]:
        """What ``SecAggPlusWorkflow`` must be configured with for the encoding to be exact."""
        return {"clipping_range": self.clipping_range, "quantization_range": self.quantization,
                "modulus_range": MODULUS}

    def as_config(self) -> dict[str, float | int]:
        return {"secagg-partners": self.partners, "secagg-honest": self.honest,
                "secagg-max-customers": self.max_customers, "secagg-coordinates": self.coordinates,
                "secagg-rounds": self.rounds}

    @classmethod
    def from_config(cls, config: dict[str, object], noise_multiplier: float, clip: float) -> DistributedNoise:
        """A partner rebuilds the encoding from the job's public numbers (it never trusts R or Q sent to it)."""
        return cls.for_job(partners=int(config["secagg-partners"]), honest=int(config["secagg-honest"]),  # type: ignore[arg-type]
                           noise_multiplier=noise_multiplier, clip=clip,
                           max_customers=int(config["secagg-max-customers"]),  # type: ignore[arg-type]
                           coordinates=int(config["secagg-coordinates"]),  # type: ignore[arg-type]
                           rounds=int(config["secagg-rounds"]))  # type: ignore[arg-type]


def discrete_gaussian_noise(size: int, scale: float) -> np.ndarray:
    """``size`` integers from the discrete Gaussian N_Z(0, scale^2), drawn by OpenDP's exact sampler."""
    dp = _opendp()
    space = dp.vector_domain(dp.atom_domain(T="i32")), dp.l2_distance(T="i32")
    meas = space >> dp.m.then_gaussian(scale=float(scale))
    return np.asarray(meas([0] * size), dtype=np.int64)


def encode_noisy_share(clipped_sum: np.ndarray, enc: DistributedNoise) -> np.ndarray:
    """round(S / Delta) + discrete noise, as float64 grid points that Flower's quantiser maps exactly.

    Raises :class:`SecureAggregationError` (the round is refused, never clipped) if a coordinate would
    leave [-R, R]: clipping there would break the sensitivity bound.
    """
    flat = np.asarray(clipped_sum, dtype=np.float64).ravel()
    if flat.size != enc.coordinates:
        raise ConfigError(f"the update has {flat.size} coordinates, the job's encoding {enc.coordinates}")
    if not np.isfinite(flat).all():  # NaN compares False with the bound below and would slip through
        raise SecureAggregationError("a clipped sum is not finite; this round is refused")
    if np.abs(flat).max(initial=0.0) > enc.max_customers * enc.clip * (1 + 1e-9):
        raise SecureAggregationError("a clipped sum exceeds N_max x C: the partner has more customers than the "
                                     "job's public bound (secagg-max-customers)")
    grid = np.rint(flat / enc.step).astype(np.int64) + discrete_gaussian_noise(flat.size, enc.share_scale)
    limit = int(round(enc.clipping_range / enc.step))
    if np.abs(grid).max(initial=0) > limit:
        raise SecureAggregationError("a noisy coordinate left the SecAgg+ clipping range; this round is refused "
                                     f"(probability <= {enc.overflow_probability:.1e} per job)")
    return grid.astype(np.float64) * enc.step


def decode_sum(mean: np.ndarray, contributors: int, enc: DistributedNoise) -> np.ndarray:
    """The exact grid sum from Flower's average of ``contributors`` unmasked vectors (post-processing)."""
    return np.rint(np.asarray(mean, dtype=np.float64) * contributors / enc.step) * enc.step

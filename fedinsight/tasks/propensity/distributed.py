"""Distributed-noise propensity training (``noise-model = distributed-secagg``): the encoding both sides derive.

With local noise every partner runs DP-SGD and adds the full Gaussian noise to its own update, because the
coordinator sees each update. Under SecAgg+ the coordinator sees only the sum, so one round is one *full-batch*
DP-SGD step of the whole federation: every partner sends the sum of its customers' clipped gradients plus only
its *share* of the noise (a discrete Gaussian, :mod:`fedinsight.privacy.distributed_dp`), and the shares of the
``honest - max_dropouts`` partners assumed honest and online carry the full noise ``N(0, (sigma C')^2)`` the
accountant prices. Full batch (sample rate 1) because the sum of discrete-Gaussian shares is proven to match one
Gaussian release for unsampled releases only; each round is then one Gaussian release, ``dpsgd_event(sigma, 1,
1)``, and the job's ``rounds`` of them compose to what the ledger charges (the same path as local mode: plan()).

The job's other releases -- the feature statistics for the shared scaler, the predicted-LTV histogram and the
held-out evaluation -- go the same way (:func:`release_encoding`): each is one SecAgg+ sum of the partners' exact
vectors plus their discrete-Gaussian shares, at the multiplier local mode uses for the same release (so the ledger
charges the same Gaussian event), with the noise calibrated to the vector's declared L2 bound after rounding onto
the grid. The coordinator never sees a partner's own statistics, histogram or evaluation.

Everything here is a function of public numbers (the options, the partner count, the model's shapes), so each
partner recomputes the encoding itself instead of taking the coordinator's word for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedinsight.core.errors import ConfigError
from fedinsight.federation.secagg import trust_text
from fedinsight.models.federated_stats import SPEND_BINS, stats_length, stats_sensitivity
from fedinsight.models.propensity import build_model, get_weights
from fedinsight.privacy.distributed_dp import MODULUS, DistributedNoise
from fedinsight.tasks.propensity import evaluation
from fedinsight.tasks.propensity.features import FEATURES
from fedinsight.tasks.propensity.options import PropensityOptions

SECURE_PHASE = "secagg"
MECHANISM = "dp-sgd+secagg"
"""The manifest's and ledger's name of a distributed-noise training round."""
RELEASE_MECHANISM = "discrete-gaussian+secagg"
"""The manifest's and ledger's name of a distributed-noise statistics, histogram or evaluation release."""
RELEASES = ("stats", "ltv-hist", "evaluate")
"""The non-training releases that travel as SecAgg+ sums with distributed noise (phase ``secagg-<release>``)."""
MAX_INFLATION = 1.5
"""Largest C'/C a release vector accepts (rounding onto the grid; its noise is calibrated to C' anyway)."""


def release_phase(release: str) -> str:
    """The SecAgg+ fit phase of one of :data:`RELEASES`."""
    if release not in RELEASES:
        raise ConfigError(f"unknown propensity release '{release}' (expected one of {', '.join(RELEASES)})")
    return f"{SECURE_PHASE}-{release}"


def release_of(phase: str) -> str | None:
    """The release a SecAgg+ fit phase carries (None: a training round)."""
    for release in RELEASES:
        if phase == release_phase(release):
            return release
    return None


def release_shape(options: PropensityOptions, release: str) -> tuple[float, float, int]:
    """(noise multiplier, per-customer L2 bound, coordinates) of one release: the multiplier is local mode's for the
    same release, so the ledger's Gaussian event is unchanged; only who adds the noise differs."""
    dp = options.plan()
    if dp is None or not options.distributed:
        raise ConfigError("distributed noise belongs to private jobs with --noise-model distributed-secagg")
    if release == "stats":
        return dp.gaussian_noise_multiplier, stats_sensitivity(len(FEATURES)), stats_length(len(FEATURES))
    if release == "ltv-hist":
        return dp.gaussian_noise_multiplier, 1.0, SPEND_BINS
    if release == "evaluate":
        m = options.eval_noise_multiplier()
        if m is None:
            raise ConfigError("this job was planned without evaluation (evaluate = false): nothing to release")
        return m, evaluation.SENSITIVITY, evaluation.COORDINATES
    release_phase(release)  # raises: unknown release
    raise AssertionError  # pragma: no cover


def release_encoding(options: PropensityOptions, partners: int, release: str) -> DistributedNoise:
    """The SecAgg+ grid and noise shares of one statistics / histogram / evaluation release (ConfigError, naming
    what to change, if no exact grid fits). Every coordinate of one customer's contribution lies in [0, L2], so a
    partner's vector lies in [0, N_max L2], what :func:`~fedinsight.privacy.distributed_dp.encode_noisy_share`
    checks."""
    multiplier, l2, coordinates = release_shape(options, release)
    try:
        return DistributedNoise.for_job(partners=partners, honest=options.noise_shares(partners),
                                        noise_multiplier=multiplier, clip=l2, max_customers=options.max_customers,
                                        coordinates=coordinates, rounds=1, max_inflation=MAX_INFLATION)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (propensity {release}: lower --max-customers, now {options.max_customers}, to the "
                          "largest partner's customer count, or use --noise-model local)") from None


def shapes(options: PropensityOptions) -> dict[str, tuple[int, ...]]:
    """The model's parameter shapes, in the order its state dict (and the secure vector) lists them."""
    with torch.random.fork_rng():  # build_model seeds torch's global generator with the public seed: not here
        model = build_model(len(FEATURES), options.model, options.seed)
    return {k: tuple(v.shape) for k, v in get_weights(model).items()}


def coordinates(options: PropensityOptions) -> int:
    return int(sum(int(np.prod(s)) for s in shapes(options).values()))


def encoding(options: PropensityOptions, partners: int) -> DistributedNoise:
    """The job's SecAgg+ grid and noise shares (ConfigError, naming what to change, if no exact grid fits)."""
    dp = options.plan()
    if dp is None or not options.distributed:
        raise ConfigError("distributed noise belongs to private jobs with --noise-model distributed-secagg")
    shares = options.noise_shares(partners)
    try:
        return DistributedNoise.for_job(partners=partners, honest=shares, noise_multiplier=dp.noise_multiplier,
                                        clip=dp.max_grad_norm, max_customers=options.max_customers,
                                        coordinates=coordinates(options), rounds=options.rounds)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (for propensity: lower --max-customers, now {options.max_customers}, to the "
                          "largest partner's customer count, or use --model logreg)") from None


def trust_model(options: PropensityOptions, partners: int) -> str:
    """The trust model in words: summary.json, the ledger's charge descriptions, the report."""
    if options.non_private:
        return "non-private run: no DP noise"
    if not options.distributed:
        return ("local noise: every partner runs DP-SGD and adds the full Gaussian noise to its own update (no "
                "trust in anyone needed)")
    return trust_text(partners, options.honest_partners, options.max_dropouts)


def secagg_summary(options: PropensityOptions, enc: DistributedNoise, contributors: list[int]) -> dict[str, Any]:
    """summary.json's ``privacy.secagg``: the trust settings, the grid, and how many shares each sum held."""
    return {"honest_partners": options.honest_partners or enc.partners, "max_dropouts": options.max_dropouts,
            "noise_shares": enc.honest, "partners": enc.partners, "max_customers": enc.max_customers,
            "clipping_range": enc.clipping_range, "quantization_range": enc.quantization, "modulus_range": MODULUS,
            "grid_step": enc.step, "sensitivity": round(enc.sensitivity, 9), "clip": enc.clip,
            "noise_multiplier_of_the_sum": enc.noise_multiplier, "share_scale_grid_units": enc.share_scale,
            "overflow_probability": enc.overflow_probability, "tau": enc.tau,
            "contributors_min": min(contributors, default=0), "rounds_unmasked": len(contributors)}


def flatten(weights: dict[str, np.ndarray], options: PropensityOptions) -> np.ndarray:
    return np.concatenate([np.asarray(weights[k], np.float64).ravel() for k in shapes(options)])


def unflatten(vector: np.ndarray, options: PropensityOptions) -> dict[str, np.ndarray]:
    """Weights from a flat vector in :func:`shapes` order (ConfigError if the length does not match)."""
    flat = np.asarray(vector, np.float64).ravel()
    expected = shapes(options)
    if flat.size != sum(int(np.prod(s)) for s in expected.values()):
        raise ConfigError(f"a vector of {flat.size} numbers does not fit the {options.model} model")
    out, offset = {}, 0
    for key, shape in expected.items():
        size = int(np.prod(shape))
        out[key] = flat[offset:offset + size].reshape(shape).astype(np.float32)
        offset += size
    return out

"""Noise for aggregates, drawn by OpenDP's vetted samplers.

Why OpenDP and not numpy: floating-point Laplace/Gaussian samplers written with numpy leak through
the low bits of the result (Mironov 2012); OpenDP's samplers are built to avoid that. Each release
also carries everything needed downstream: the noise scale (for error bars), a 95 % interval
half-width, and the ``dp_accounting`` event the privacy ledger composes. The OpenDP measurement's own
privacy map is checked against the event, so the number we charge is the number OpenDP guarantees.

Sensitivities are the caller's declared contribution bounds (values clamped, rows per customer
capped) *per customer*, the privacy unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError

Mechanism = Literal["laplace", "gaussian"]

LAPLACE_Z95 = math.log(20.0)  # P(|Lap(b)| > b ln 20) = 5 %
GAUSSIAN_Z95 = 1.959963984540054


def _opendp():  # type: ignore[no-untyped-def]
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


@dataclass(frozen=True)
class NoisyRelease:
    """A noisy vector and how noisy it is."""

    values: np.ndarray
    mechanism: Mechanism
    scale: float  # Laplace b or Gaussian sigma, per coordinate
    sensitivity: float  # L1 (Laplace) or L2 (Gaussian) bound of one customer's contribution
    event: dp_event.DpEvent

    @property
    def ci95_halfwidth(self) -> float:
        """Half-width of a 95 % interval for one coordinate due to the noise alone."""
        z = LAPLACE_Z95 if self.mechanism == "laplace" else GAUSSIAN_Z95
        return z * self.scale

    @property
    def variance(self) -> float:
        """Noise variance per coordinate (2b² for Laplace, σ² for Gaussian)."""
        return 2 * self.scale**2 if self.mechanism == "laplace" else self.scale**2


def _check(values: np.ndarray, sensitivity: float, budget: float, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(arr)):
        raise ConfigError("values to release must be finite numbers (clamp them first)")
    if not (sensitivity > 0 and math.isfinite(sensitivity)):
        raise ConfigError(f"sensitivity must be a positive number (got {sensitivity})")
    if not (budget > 0 and math.isfinite(budget)):
        raise ConfigError(f"{what} must be a positive number (got {budget})")
    return arr


def laplace(values: np.ndarray | list[float], sensitivity: float, epsilon: float) -> NoisyRelease:
    """epsilon-DP release of a vector whose L1 sensitivity (per customer) is ``sensitivity``."""
    arr = _check(np.asarray(values), sensitivity, epsilon, "epsilon")
    dp = _opendp()
    scale = sensitivity / epsilon
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    meas = space >> dp.m.then_laplace(scale=scale)
    guaranteed = meas.map(float(sensitivity))
    if guaranteed > epsilon * (1 + 1e-9):
        raise AssertionError(f"OpenDP guarantees epsilon {guaranteed}, expected {epsilon}")
    noisy = np.asarray(meas(arr.tolist()), dtype=float) if len(arr) else arr
    return NoisyRelease(noisy, "laplace", scale, float(sensitivity), dp_event.LaplaceDpEvent(scale / sensitivity))


def gaussian(values: np.ndarray | list[float], sensitivity: float, noise_multiplier: float) -> NoisyRelease:
    """Gaussian release with sigma = ``noise_multiplier`` x L2 sensitivity (rho = 1 / (2 m²) zCDP)."""
    arr = _check(np.asarray(values), sensitivity, noise_multiplier, "noise multiplier")
    dp = _opendp()
    scale = sensitivity * noise_multiplier
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float)
    meas = space >> dp.m.then_gaussian(scale=scale)
    rho = meas.map(float(sensitivity))
    expected_rho = 1.0 / (2.0 * noise_multiplier**2)
    if rho > expected_rho * (1 + 1e-6):
        raise AssertionError(f"OpenDP guarantees rho {rho}, expected {expected_rho}")
    noisy = np.asarray(meas(arr.tolist()), dtype=float) if len(arr) else arr
    return NoisyRelease(noisy, "gaussian", scale, float(sensitivity), dp_event.GaussianDpEvent(noise_multiplier))


def release(
    values: np.ndarray | list[float], sensitivity: float, epsilon: float, *, mechanism: Mechanism = "laplace",
    delta: float = 1e-6,
) -> NoisyRelease:
    """Release with a target (epsilon, delta): Laplace directly; Gaussian calibrated by dp_accounting."""
    if mechanism == "laplace":
        return laplace(values, sensitivity, epsilon)
    if mechanism == "gaussian":
        return gaussian(values, sensitivity, gaussian_noise_multiplier(epsilon, delta))
    raise ConfigError(f"unknown mechanism '{mechanism}', expected laplace or gaussian")


def gaussian_noise_multiplier(epsilon: float, delta: float) -> float:
    """Smallest noise multiplier whose single Gaussian release is (epsilon, delta)-DP (RDP accounting)."""
    from dp_accounting import calibrate_dp_mechanism
    from dp_accounting.rdp import RdpAccountant

    if not (epsilon > 0 and 0 < delta < 1):
        raise ConfigError(f"need epsilon > 0 and 0 < delta < 1 (got {epsilon}, {delta})")
    return float(
        calibrate_dp_mechanism(RdpAccountant, dp_event.GaussianDpEvent, epsilon, delta, bracket_interval=None)
    )


# --- key selection: release only keys whose noisy count clears a threshold (OpenDP) -------------------

@dataclass(frozen=True)
class ThresholdRelease:
    """Noisy counts of the keys that cleared the threshold, and what the release cost.

    The release is ``(rho or epsilon, delta)``: the noise part is the ``event`` (what the ledger composes);
    ``delta`` is the chance that a key held by a single customer clears the threshold at all -- the price
    of not knowing the keys in advance (Rogers 2023).
    """

    counts: dict[str, float]
    mechanism: Mechanism
    scale: float  # Laplace b or Gaussian sigma per key
    threshold: float
    delta: float
    event: dp_event.DpEvent


def _threshold_measurement(mechanism: Mechanism, scale: float, threshold: float):  # type: ignore[no-untyped-def]
    dp = _opendp()
    domain = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=float, nan=False))
    if mechanism == "laplace":
        metric = dp.l01inf_distance(dp.absolute_distance(T=float))
        return dp.m.make_laplace_threshold(domain, metric, scale=float(scale), threshold=float(threshold))
    if mechanism == "gaussian":
        metric = dp.l02inf_distance(dp.absolute_distance(T=float))
        return dp.m.make_gaussian_threshold(domain, metric, scale=float(scale), threshold=float(threshold))
    raise ConfigError(f"unknown mechanism '{mechanism}', expected laplace or gaussian")


def _key_bound(mechanism: Mechanism, keys_per_unit: int) -> tuple[float, tuple[int, float, float]]:
    """(sensitivity the multiplier is relative to, OpenDP's input distance) for ``keys_per_unit`` keys, +1 each."""
    if isinstance(keys_per_unit, bool) or not isinstance(keys_per_unit, int) or keys_per_unit < 1:
        raise ConfigError(f"keys per customer must be a whole number >= 1 (got {keys_per_unit!r})")
    l1, l2 = float(keys_per_unit), math.sqrt(keys_per_unit)
    return (l1, (keys_per_unit, l1, 1.0)) if mechanism == "laplace" else (l2, (keys_per_unit, l2, 1.0))


def threshold_delta(mechanism: Mechanism, multiplier: float, keys_per_unit: int, threshold: float) -> float:
    """OpenDP's delta of a threshold release (the chance a key of one customer shows at all)."""
    sensitivity, d_in = _key_bound(mechanism, keys_per_unit)
    meas = _threshold_measurement(mechanism, multiplier * sensitivity, threshold)
    return float(meas.map(d_in)[1])


def threshold_for_delta(mechanism: Mechanism, multiplier: float, keys_per_unit: int, delta: float,
                        floor: float = 1.0) -> float:
    """The smallest whole-number threshold >= ``floor`` whose release has OpenDP delta <= ``delta``."""
    if not 0 < delta < 1:
        raise ConfigError(f"key-selection delta must be in (0, 1) (got {delta})")
    lo = max(1.0, math.ceil(floor))
    if threshold_delta(mechanism, multiplier, keys_per_unit, lo) <= delta:
        return lo
    hi = lo * 2
    while threshold_delta(mechanism, multiplier, keys_per_unit, hi) > delta:
        lo, hi = hi, hi * 2
        if hi > 1e12:
            raise ConfigError("no threshold reaches the key-selection delta: raise epsilon or delta")
    while hi - lo > 1:  # whole numbers: a count clears it or not
        mid = math.floor((lo + hi) / 2)
        lo, hi = (mid, hi) if threshold_delta(mechanism, multiplier, keys_per_unit, mid) > delta else (lo, mid)
    return float(hi)


def threshold_release(counts: dict[str, float], *, mechanism: Mechanism, multiplier: float, keys_per_unit: int,
                      threshold: float, max_delta: float) -> ThresholdRelease:
    """Release the keys of ``counts`` whose noisy count reaches ``threshold`` (OpenDP's threshold mechanisms).

    ``counts``: customers per key, each customer counted in at most ``keys_per_unit`` keys, once each (the
    caller bounds this). ``multiplier``: noise scale per unit of L1 (Laplace) or L2 (Gaussian) sensitivity,
    as :func:`laplace` / :func:`gaussian` take it. OpenDP's own privacy map is checked against the event
    charged and against ``max_delta``; a key absent from the output was either rare or unlucky -- nobody
    can tell which.
    """
    if not (isinstance(multiplier, int | float) and math.isfinite(multiplier) and multiplier > 0):
        raise ConfigError(f"noise multiplier must be a positive number (got {multiplier!r})")
    sensitivity, d_in = _key_bound(mechanism, keys_per_unit)
    scale = multiplier * sensitivity
    meas = _threshold_measurement(mechanism, scale, threshold)
    loss, delta = meas.map(d_in)
    if mechanism == "laplace":
        event: dp_event.DpEvent = dp_event.LaplaceDpEvent(multiplier)
        if loss > (1.0 / multiplier) * (1 + 1e-9):
            raise AssertionError(f"OpenDP guarantees epsilon {loss}, expected {1.0 / multiplier}")
    else:
        event = dp_event.GaussianDpEvent(multiplier)
        if loss > 1.0 / (2.0 * multiplier**2) * (1 + 1e-6):
            raise AssertionError(f"OpenDP guarantees rho {loss}, expected {1.0 / (2.0 * multiplier**2)}")
    if delta > max_delta * (1 + 1e-9):
        raise ConfigError(f"key selection at threshold {threshold:g} has delta {delta:.3g} > the {max_delta:.3g} "
                          "it was priced at; refused")
    clean = {str(k): float(v) for k, v in counts.items() if float(v) > 0}
    released = meas(clean) if clean else {}
    return ThresholdRelease({str(k): float(v) for k, v in released.items()}, mechanism, scale, float(threshold),
                            float(delta), event)

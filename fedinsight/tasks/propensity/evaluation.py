"""Differentially private evaluation of the propensity model: what a partner releases about its held-out
customers, how it is noised and charged, and what the coordinator reads back from it.

Why: exact held-out counts (customers, positives, loss sums, 2 x 512 score histograms) let a coordinator
difference two evaluations and read single customers' labels (issue 14). Every evaluation release is now
one Gaussian release (OpenDP's vetted sampler, :func:`~fedinsight.privacy.mechanisms.gaussian`) of a small,
fixed vector, priced in the job's plan and charged on both ledgers like training:

- ``hist_pos`` / ``hist_neg``: customers per bin of the predicted logit (:data:`DP_LOGIT_BINS` bins on
  ``[-DP_LOGIT_RANGE, DP_LOGIT_RANGE]``, clamped), by label. Far coarser than the exact 512-bin summary on
  purpose: every bin carries noise, and the AUC's error grows with the square root of the bins (measured at
  CDNOW's size: 40 bins 0.08, 16 bins 0.05, the binning itself costs 0.006);
- ``sum_log_loss``: per-customer log loss clipped to ``eval-log-loss-cap``; ``sum_abs_error``: per-customer
  |holdout spend - predicted LTV| clipped to ``eval-error-cap`` (money);
- ``tier_confusion``: actual x predicted LTV tier counts (3 x 3);
- ``n`` / ``positives``: held-out customers and repurchasers (the denominators).

Per customer the vector changes by at most 1 in each count, one bin of one histogram, one tier cell, and its
clipped loss and error. Before the noise every part is scaled (:func:`scales`) so that a customer moves the
histograms by at most 1 and each other part by at most :data:`SECONDARY_WEIGHT`: the L2 sensitivity is
:data:`SENSITIVITY` = 1.5, and the histograms get the least noise. Calibration bins are *derived* from the
noisy histograms on the coordinator (post-processing): no exact count leaves the partner.

Post-processing on the coordinator (:func:`read`): the partners' releases are summed; AUC and lift are read
off the summed histograms *before* clamping (the noise is independent across bins, so the AUC's numerator stays
unbiased; clamping every empty bin to >= 0 would add mass at the extremes and pull AUC towards 0.5), the AUC
clipped to [0, 1]; curves (ROC, gain, calibration, tiers) use the histograms with negatives clamped to 0.

The noise multiplier is calibrated for the job (:func:`eval_noise_multiplier`): training and the feature
statistics are planned at ``(1 - eval-share) x epsilon`` and the evaluation releases get the smallest
multiplier that keeps the composition of everything at or below ``epsilon``. Evaluating every round
multiplies the releases (``rounds + 1`` instead of 1), so the default is one final evaluation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError
from fedinsight.models.metrics import CALIBRATION_BINS, TIERS, EvalSummary
from fedinsight.privacy.dpsgd import DpsgdPlan, history_epsilon
from fedinsight.privacy.ledger import compose_epsilon
from fedinsight.privacy.mechanisms import gaussian
from fedinsight.privacy.suppression import suppressed as suppressed_groups

DP_LOGIT_BINS = 16
DP_LOGIT_RANGE = 4.0
SECONDARY_WEIGHT = 0.5
"""Weight of every part but the histograms in the scaled vector: their noise is 1 / 0.5 = 2 x the histograms'.
The AUC, lift and curves read the histograms; counts, sums and tiers are large totals that tolerate more."""
SENSITIVITY = math.sqrt(1.0 + 5 * SECONDARY_WEIGHT**2)
"""L2 per customer of the scaled vector: 1 for its histogram bin, 0.5 for each of its count, positive, clipped
loss, clipped error and tier cell: sqrt(1 + 5 x 0.25) = 1.5."""

LENGTHS: dict[str, int | None] = {"n": None, "positives": None, "hist_pos": DP_LOGIT_BINS,
                                  "hist_neg": DP_LOGIT_BINS, "sum_log_loss": None, "sum_abs_error": None,
                                  "tier_confusion": len(TIERS) ** 2}
"""The evaluation release: key -> None (a scalar) or its fixed length."""


@dataclass(frozen=True)
class EvalCaps:
    """Public per-customer clipping bounds of the summed log loss and LTV error."""

    log_loss: float
    error: float

    def __post_init__(self) -> None:
        if not (self.log_loss > 0 and self.error > 0 and math.isfinite(self.log_loss) and math.isfinite(self.error)):
            raise ConfigError(f"evaluation caps must be positive numbers (got {self.log_loss}, {self.error})")


def dp_logit_bin(p: np.ndarray) -> np.ndarray:
    """Bin of each probability on the release's logit grid (outside the range: the end bins)."""
    q = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    logit = np.log(q) - np.log1p(-q)
    idx = np.floor((logit + DP_LOGIT_RANGE) / (2 * DP_LOGIT_RANGE) * DP_LOGIT_BINS).astype(int)
    return np.clip(idx, 0, DP_LOGIT_BINS - 1)


def bin_probabilities() -> np.ndarray:
    """The probability at the centre (in logit) of each bin: what calibration is read at."""
    centres = -DP_LOGIT_RANGE + (np.arange(DP_LOGIT_BINS) + 0.5) * (2 * DP_LOGIT_RANGE / DP_LOGIT_BINS)
    return 1.0 / (1.0 + np.exp(-centres))


def exact_release(y: np.ndarray, p: np.ndarray, *, caps: EvalCaps, spend: np.ndarray | None = None,
                  ltv: np.ndarray | None = None, true_tiers: np.ndarray | None = None,
                  predicted_tiers: np.ndarray | None = None) -> dict[str, np.ndarray | float]:
    """The vector a partner noises, before the noise (never sent as such)."""
    y = np.asarray(y, dtype=float).ravel()
    p = np.asarray(p, dtype=float).ravel()
    idx = dp_logit_bin(p)
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    loss = np.minimum(-(y * np.log(pc) + (1 - y) * np.log1p(-pc)), caps.log_loss)
    error = 0.0
    if spend is not None and ltv is not None:
        error = float(np.minimum(np.abs(np.asarray(spend, float) - np.asarray(ltv, float)), caps.error).sum())
    tiers = np.zeros(len(TIERS) ** 2)
    if true_tiers is not None and predicted_tiers is not None:
        flat = np.asarray(true_tiers, int) * len(TIERS) + np.asarray(predicted_tiers, int)
        tiers = np.bincount(flat, minlength=len(TIERS) ** 2).astype(float)
    return {"n": float(len(y)), "positives": float(y.sum()),
            "hist_pos": np.bincount(idx, weights=y, minlength=DP_LOGIT_BINS).astype(float),
            "hist_neg": np.bincount(idx, weights=1 - y, minlength=DP_LOGIT_BINS).astype(float),
            "sum_log_loss": float(loss.sum()), "sum_abs_error": error, "tier_confusion": tiers}


def scales(caps: EvalCaps) -> dict[str, float]:
    """What each part is divided by before the noise (so each customer moves it by at most its weight)."""
    out = {k: 1.0 / SECONDARY_WEIGHT for k in LENGTHS}
    out.update({"hist_pos": 1.0, "hist_neg": 1.0, "sum_log_loss": caps.log_loss / SECONDARY_WEIGHT,
                "sum_abs_error": caps.error / SECONDARY_WEIGHT})
    return out


COORDINATES = sum(n or 1 for n in LENGTHS.values())
"""Numbers in one (scaled) evaluation vector: what a distributed-noise evaluation sends masked."""


def scaled_vector(values: dict[str, np.ndarray | float], caps: EvalCaps) -> np.ndarray:
    """The release as one flat vector, every part divided by its :func:`scales` (L2 :data:`SENSITIVITY` per
    customer; every coordinate of one customer's contribution lies in [0, 1])."""
    scale = scales(caps)
    return np.concatenate([np.atleast_1d(np.asarray(values[k], dtype=float)) / scale[k] for k in LENGTHS])


def unscaled(flat: np.ndarray, caps: EvalCaps) -> dict[str, float | list[float]]:
    """The release's keys and units back from a flat scaled vector (post-processing)."""
    scale = scales(caps)
    flat = np.asarray(flat, dtype=float).ravel()
    if flat.size != COORDINATES:
        raise ConfigError(f"an evaluation vector has {COORDINATES} numbers, got {flat.size}")
    out: dict[str, float | list[float]] = {}
    at = 0
    for key, length in LENGTHS.items():
        n = length or 1
        part = flat[at:at + n] * scale[key]
        out[key] = float(part[0]) if length is None else [float(v) for v in part]
        at += n
    return out


def noisy_release(values: dict[str, np.ndarray | float], caps: EvalCaps,
                  noise_multiplier: float | None) -> dict[str, float | list[float]]:
    """The partner's evaluation reply: ``values`` with Gaussian noise of ``noise_multiplier`` x
    :data:`SENSITIVITY` (OpenDP), or as they are in a non-private job (``None``)."""
    flat = scaled_vector(values, caps)
    if noise_multiplier is not None:
        flat = gaussian(flat, SENSITIVITY, noise_multiplier).values
    return unscaled(flat, caps)


def suppressed(release: dict[str, float | list[float]], minimum: int) -> bool:
    """Whether a release is withheld for too few held-out customers, decided on its *noisy* count ``n``
    (post-processing of the DP release, so the decision carries no exact count; issue 14)."""
    return bool(suppressed_groups(np.array([float(release["n"])]), minimum)[0])  # type: ignore[arg-type]


def summary_of(releases: list[dict[str, object]], *, tiers: bool) -> EvalSummary:
    """The coordinator's reading of the partners' summed releases (post-processing only): negative noisy
    counts clamped to 0; customers and positives from the histograms; calibration bins from the histograms at
    each bin's centre probability; the tier matrix only when tiers were evaluated (``tiers``)."""
    total = summed(releases)
    pos, neg = np.maximum(total["hist_pos"], 0.0), np.maximum(total["hist_neg"], 0.0)
    count = pos + neg
    probs = bin_probabilities()
    cal = np.minimum((probs * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    conf = np.maximum(total["tier_confusion"], 0.0) if tiers else np.zeros(len(TIERS) ** 2)
    return EvalSummary(n=max(0.0, float(total["n"][0])), positives=max(0.0, float(total["positives"][0])),
                       sum_log_loss=max(0.0, float(total["sum_log_loss"][0])),
                       sum_abs_error=max(0.0, float(total["sum_abs_error"][0])),
                       hist_pos=pos, hist_neg=neg,
                       cal_n=np.bincount(cal, weights=count, minlength=CALIBRATION_BINS),
                       cal_pos=np.bincount(cal, weights=pos, minlength=CALIBRATION_BINS),
                       cal_psum=np.bincount(cal, weights=count * probs, minlength=CALIBRATION_BINS),
                       tier_confusion=conf)


def eval_event(noise_multiplier: float) -> dp_event.DpEvent:
    return dp_event.GaussianDpEvent(noise_multiplier)


@functools.lru_cache(maxsize=256)
def eval_noise_multiplier(plan: DpsgdPlan, epsilon: float, delta: float, releases: int) -> float:
    """The smallest Gaussian multiplier such that the job's plan plus ``releases`` evaluation releases stays at
    or below ``epsilon`` (both accountants, the larger figure counts). Remembered: a pure function."""
    if releases < 1:
        raise ConfigError("an evaluation plan needs at least one release")

    def cost(m: float) -> float:
        events = [*plan.events(), dp_event.SelfComposedDpEvent(eval_event(m), releases)]
        return max(compose_epsilon(events, delta), history_epsilon([*plan.history(), (m, 1.0, releases)], delta))

    if compose_epsilon(plan.events(), delta) >= epsilon:
        raise ConfigError("training leaves no budget for the evaluation: raise --eval-share or --epsilon")
    lo, hi = 0.1, 1.0
    while cost(hi) > epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e7:  # pragma: no cover - training alone is below epsilon
            raise ConfigError("cannot fit the evaluation into the privacy budget")
    while hi / lo > 1.002:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if cost(mid) > epsilon else (lo, mid)
    return hi


def summed(releases: list[dict[str, object]]) -> dict[str, np.ndarray]:
    total = {k: np.zeros(n or 1) for k, n in LENGTHS.items()}
    for r in releases:
        for k in LENGTHS:
            total[k] = total[k] + np.atleast_1d(np.asarray(r[k], dtype=float))
    return total


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    p_total, n_total = float(pos.sum()), float(neg.sum())
    if p_total <= 0 or n_total <= 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float(np.clip((pos * (below + 0.5 * neg)).sum() / (p_total * n_total), 0.0, 1.0))


def read(releases: list[dict[str, object]], *, tiers: bool, noise_multiplier: float | None = None,
         noise_sd: float | None = None) -> tuple[dict[str, float], EvalSummary]:
    """Pooled metrics and the clamped summary (for curves) from the partners' noisy releases.

    With the releases' ``noise_multiplier``, ``auc_noise_sd`` says how much the noise alone moves the AUC:
    the histograms are noised again 200 times with the same (public) noise and the AUC's spread measured --
    post-processing of released values on the coordinator, so its randomness needs no protection. ``noise_sd``:
    the histogram bins' noise sd when it is known directly (one SecAgg+ sum of noise shares); else it is the
    releases' local noise, ``noise_multiplier x SENSITIVITY x sqrt(releases)``."""
    from fedinsight.models.metrics import pooled_metrics

    summary = summary_of(releases, tiers=tiers)
    metrics = pooled_metrics(summary)
    raw = summed(releases)
    metrics["auc"] = _auc(raw["hist_pos"], raw["hist_neg"])
    if (noise_multiplier is not None or noise_sd is not None) and math.isfinite(metrics["auc"]):
        sd = noise_sd if noise_sd is not None else noise_multiplier * SENSITIVITY * math.sqrt(len(releases))  # type: ignore[operator]
        rng = np.random.default_rng()
        draws = [_auc(summary.hist_pos + rng.normal(0, sd, DP_LOGIT_BINS),
                      summary.hist_neg + rng.normal(0, sd, DP_LOGIT_BINS)) for _ in range(200)]
        metrics["auc_noise_sd"] = float(np.nanstd(draws))
    return metrics, summary

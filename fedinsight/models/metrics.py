"""Evaluation metrics for propensity and LTV, exact and from mergeable per-partner summaries.

Why summaries: a federated evaluation must not move per-customer scores, yet AUC and top-decile lift
are *pooled* rank statistics that a sample-weighted mean of per-partner AUCs does not reproduce (under
label skew it can be far off). Each partner therefore summarises its held-out customers into
fixed-size, additive counts (:class:`EvalSummary`: a score histogram per label on a fine logit grid,
calibration bins, sums of losses and errors, a tier confusion matrix); the coordinator adds the
summaries and computes pooled metrics from the sum (:func:`pooled_metrics`). With 512 logit bins the
histogram AUC matches the exact AUC to ~1e-3; ECE, log loss, MAE and tier accuracy are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

LOGIT_BINS = 512
LOGIT_RANGE = 10.0  # scores are binned on logit in [-10, 10]
CALIBRATION_BINS = 10
TIERS: tuple[str, ...] = ("low", "mid", "high")


def _arrays(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    s = np.asarray(s, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length ({len(y)} vs {len(s)})")
    return y, s


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half); NaN without both classes."""
    y, s = _arrays(y, score)
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    y, p = _arrays(y, p)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))) if len(y) else float("nan")


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """ECE with equal-width probability bins: sum over bins of |mean p - positive rate| x bin share."""
    y, p = _arrays(y, p)
    idx = np.minimum((np.clip(p, 0, 1) * bins).astype(int), bins - 1)
    n = np.bincount(idx, minlength=bins)
    pos = np.bincount(idx, weights=y, minlength=bins)
    psum = np.bincount(idx, weights=p, minlength=bins)
    return _ece(n, pos, psum)


def _ece(n: np.ndarray, pos: np.ndarray, psum: np.ndarray) -> float:
    total = n.sum()
    if total <= 0:
        return float("nan")
    return float(np.abs(psum - pos).sum() / total)


def lift_top_decile(y: np.ndarray, score: np.ndarray) -> float:
    """Positive rate among the top 10 % by score divided by the overall positive rate."""
    y, s = _arrays(y, score)
    if len(y) == 0 or y.mean() == 0:
        return float("nan")
    k = max(1, int(round(0.1 * len(y))))
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def mean_absolute_error(actual: np.ndarray, predicted: np.ndarray) -> float:
    a, p = _arrays(actual, predicted)
    return float(np.mean(np.abs(a - p))) if len(a) else float("nan")


def assign_tiers(values: np.ndarray, thresholds: tuple[float, float]) -> np.ndarray:
    """0 = low, 1 = mid, 2 = high: ``value > high_threshold`` is high, ``> mid_threshold`` is mid."""
    mid, high = thresholds
    v = np.asarray(values, dtype=float)
    return np.where(v > high, 2, np.where(v > mid, 1, 0))


def tier_accuracy(true_tiers: np.ndarray, predicted_tiers: np.ndarray) -> float:
    t, p = np.asarray(true_tiers).ravel(), np.asarray(predicted_tiers).ravel()
    return float(np.mean(t == p)) if len(t) else float("nan")


def logit_bin(p: np.ndarray) -> np.ndarray:
    """Index of each probability's bin on the fixed logit grid."""
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    logit = np.log(p) - np.log1p(-p)
    idx = ((logit + LOGIT_RANGE) / (2 * LOGIT_RANGE) * LOGIT_BINS).astype(int)
    return np.clip(idx, 0, LOGIT_BINS - 1)


@dataclass
class EvalSummary:
    """Additive, fixed-size summary of one partner's held-out evaluation (nothing per customer)."""

    n: float = 0.0
    positives: float = 0.0
    sum_log_loss: float = 0.0
    sum_abs_error: float = 0.0
    hist_pos: np.ndarray = field(default_factory=lambda: np.zeros(LOGIT_BINS))
    hist_neg: np.ndarray = field(default_factory=lambda: np.zeros(LOGIT_BINS))
    cal_n: np.ndarray = field(default_factory=lambda: np.zeros(CALIBRATION_BINS))
    cal_pos: np.ndarray = field(default_factory=lambda: np.zeros(CALIBRATION_BINS))
    cal_psum: np.ndarray = field(default_factory=lambda: np.zeros(CALIBRATION_BINS))
    tier_confusion: np.ndarray = field(default_factory=lambda: np.zeros(len(TIERS) ** 2))

    LIST_LENGTHS = {"hist_pos": LOGIT_BINS, "hist_neg": LOGIT_BINS, "cal_n": CALIBRATION_BINS,
                    "cal_pos": CALIBRATION_BINS, "cal_psum": CALIBRATION_BINS, "tier_confusion": len(TIERS) ** 2}
    SCALARS = ("n", "positives", "sum_log_loss", "sum_abs_error")

    @classmethod
    def compute(cls, y: np.ndarray, p: np.ndarray, *, spend: np.ndarray | None = None,
                ltv: np.ndarray | None = None, true_tiers: np.ndarray | None = None,
                predicted_tiers: np.ndarray | None = None) -> EvalSummary:
        y, p = _arrays(y, p)
        pc = np.clip(p, 1e-7, 1 - 1e-7)
        out = cls(n=float(len(y)), positives=float(y.sum()),
                  sum_log_loss=float(-(y * np.log(pc) + (1 - y) * np.log1p(-pc)).sum()))
        idx = logit_bin(p)
        out.hist_pos = np.bincount(idx, weights=y, minlength=LOGIT_BINS).astype(float)
        out.hist_neg = np.bincount(idx, weights=1 - y, minlength=LOGIT_BINS).astype(float)
        cal = np.minimum((np.clip(p, 0, 1) * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
        out.cal_n = np.bincount(cal, minlength=CALIBRATION_BINS).astype(float)
        out.cal_pos = np.bincount(cal, weights=y, minlength=CALIBRATION_BINS)
        out.cal_psum = np.bincount(cal, weights=p, minlength=CALIBRATION_BINS)
        if spend is not None and ltv is not None:
            out.sum_abs_error = float(np.abs(np.asarray(spend, float) - np.asarray(ltv, float)).sum())
        if true_tiers is not None and predicted_tiers is not None:
            flat = np.asarray(true_tiers, int) * len(TIERS) + np.asarray(predicted_tiers, int)
            out.tier_confusion = np.bincount(flat, minlength=len(TIERS) ** 2).astype(float)
        return out

    def __add__(self, other: EvalSummary) -> EvalSummary:
        kwargs = {k: getattr(self, k) + getattr(other, k) for k in (*self.SCALARS, *self.LIST_LENGTHS)}
        return EvalSummary(**kwargs)

    def to_metrics(self) -> dict[str, float | list[float]]:
        """Flat, fixed-size values (what a partner's evaluation reply carries)."""
        out: dict[str, float | list[float]] = {k: float(getattr(self, k)) for k in self.SCALARS}
        out.update({k: [float(v) for v in getattr(self, k)] for k in self.LIST_LENGTHS})
        return out

    @classmethod
    def from_metrics(cls, values: dict[str, object]) -> EvalSummary:
        kwargs: dict[str, object] = {k: float(values[k]) for k in cls.SCALARS}  # type: ignore[arg-type]
        kwargs.update({k: np.asarray(values[k], dtype=float) for k in cls.LIST_LENGTHS})
        return cls(**kwargs)  # type: ignore[arg-type]


def _hist_auc(hist_pos: np.ndarray, hist_neg: np.ndarray) -> float:
    n_pos, n_neg = hist_pos.sum(), hist_neg.sum()
    if n_pos <= 0 or n_neg <= 0:
        return float("nan")
    neg_below = np.cumsum(hist_neg) - hist_neg
    return float((hist_pos * (neg_below + 0.5 * hist_neg)).sum() / (n_pos * n_neg))


def _hist_lift(hist_pos: np.ndarray, hist_neg: np.ndarray, share: float = 0.1) -> float:
    total = hist_pos.sum() + hist_neg.sum()
    if total <= 0 or hist_pos.sum() <= 0:
        return float("nan")
    want, taken, pos = share * total, 0.0, 0.0
    for b in range(len(hist_pos) - 1, -1, -1):  # from the highest score down
        count = hist_pos[b] + hist_neg[b]
        if count <= 0:
            continue
        use = min(count, want - taken)
        pos += hist_pos[b] * use / count  # ties within a bin: proportional share
        taken += use
        if taken >= want:
            break
    return float((pos / taken) / (hist_pos.sum() / total))


def pooled_metrics(summary: EvalSummary) -> dict[str, float]:
    """Pooled metrics of the customers behind ``summary`` (a sum of partners' summaries)."""
    n = summary.n
    conf = summary.tier_confusion
    return {
        "auc": _hist_auc(summary.hist_pos, summary.hist_neg),
        "log_loss": summary.sum_log_loss / n if n else float("nan"),
        "ece": _ece(summary.cal_n, summary.cal_pos, summary.cal_psum),
        "lift_top_decile": _hist_lift(summary.hist_pos, summary.hist_neg),
        "mae": summary.sum_abs_error / n if n else float("nan"),
        "tier_accuracy": float(np.trace(conf.reshape(len(TIERS), len(TIERS))) / conf.sum()) if conf.sum() else
        float("nan"),
        "n": n,
        "positive_rate": summary.positives / n if n else float("nan"),
    }


def exact_metrics(y: np.ndarray, p: np.ndarray, *, spend: np.ndarray | None = None, ltv: np.ndarray | None = None,
                  true_tiers: np.ndarray | None = None, predicted_tiers: np.ndarray | None = None,
                  ) -> dict[str, float]:
    """The same metrics as :func:`pooled_metrics`, computed exactly on pooled arrays (baselines, tests)."""
    out = {
        "auc": roc_auc(y, p),
        "log_loss": log_loss(y, p),
        "ece": expected_calibration_error(y, p),
        "lift_top_decile": lift_top_decile(y, p),
        "mae": mean_absolute_error(spend, ltv) if spend is not None and ltv is not None else float("nan"),
        "tier_accuracy": tier_accuracy(true_tiers, predicted_tiers)
        if true_tiers is not None and predicted_tiers is not None else float("nan"),
        "n": float(len(np.asarray(y))),
        "positive_rate": float(np.mean(y)) if len(np.asarray(y)) else float("nan"),
    }
    return out


def _thin(n: int, max_points: int) -> np.ndarray:
    """Indices 0..n-1 thinned to at most ``max_points``, always keeping both ends (curves stay anchored)."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def summary_curves(summary: EvalSummary, *, calibration: bool = True, max_points: int = 101) -> dict[str, object]:
    """Chart data of a pooled summary: ROC, cumulative gain, calibration bins and the LTV tier confusion.

    Why from the summary: the report must draw the *federated* model's curves, and the coordinator
    only ever holds the partners' summed histograms. ROC and gain points are read off the logit
    histogram from the highest score down (one point per non-empty bin, thinned to ``max_points``);
    calibration uses the equal-width probability bins that also give the ECE.
    """
    pos, neg = summary.hist_pos[::-1], summary.hist_neg[::-1]  # highest score first
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    out: dict[str, object] = {"n": float(summary.n), "positives": float(summary.positives)}
    if n_pos > 0 and n_neg > 0:
        keep = (pos + neg) > 0
        tp, fp = np.concatenate([[0.0], np.cumsum(pos[keep])]), np.concatenate([[0.0], np.cumsum(neg[keep])])
        idx = _thin(len(tp), max_points)
        tpr, fpr = tp[idx] / n_pos, fp[idx] / n_neg
        targeted = (tp[idx] + fp[idx]) / (n_pos + n_neg)
        out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
        out["gain"] = {"targeted": targeted.tolist(), "captured": tpr.tolist()}
    if calibration:
        filled = summary.cal_n > 0
        centres = (np.arange(CALIBRATION_BINS) + 0.5) / CALIBRATION_BINS
        out["calibration"] = {
            "bin_centre": centres[filled].tolist(),
            "predicted": (summary.cal_psum[filled] / summary.cal_n[filled]).tolist(),
            "observed": (summary.cal_pos[filled] / summary.cal_n[filled]).tolist(),
            "n": summary.cal_n[filled].tolist(),
        }
    if summary.tier_confusion.sum() > 0:
        out["tiers"] = {"labels": list(TIERS),
                        "confusion": summary.tier_confusion.reshape(len(TIERS), len(TIERS)).tolist()}
    return out


def exact_curves(y: np.ndarray, score: np.ndarray, *, probability: bool = True,
                 true_tiers: np.ndarray | None = None, predicted_tiers: np.ndarray | None = None,
                 max_points: int = 101) -> dict[str, object]:
    """The same chart data for pooled arrays (the baselines), through the same summary so they compare.

    A score that is not a probability (BG/NBD's expected purchases) is replaced by its rank, which keeps
    ROC and gain exact up to binning and drops the calibration plot (it would mean nothing).
    """
    y, s = _arrays(y, score)
    p = s if probability else rankdata(s) / (len(s) + 1)
    summary = EvalSummary.compute(y, p, true_tiers=true_tiers, predicted_tiers=predicted_tiers)
    return summary_curves(summary, calibration=probability, max_points=max_points)

"""Quarterly recalibration: re-fit propensity / LTV on the newest window, warm-started from the current model.

Why a propensity option (``--recalibrate-from RUN_DIR``) rather than a separate task: a recalibration *is* a
propensity job -- same partners' handlers, same releases, same ledger -- whose coordinator starts FedAvg from
the previous run's final weights (already DP: the coordinator holds them) instead of fresh ones, and evaluates
the previous model once more, next to the new one, on the newest held-out customers. So ``simulate propensity
--recalibrate-from runs/q1 --start .. --cutoff .. --end ..`` and ``job run propensity -o recalibrate-from=..``
both work, and a schedule is a cron line of the same command.

The window is the job's ``--start/--cutoff/--end``: every partner reads only its own transactions inside it
(:func:`~.features.customer_table`), so a later purchase can neither feed a feature nor a label.

What this module does on the coordinator (no customer data here):

- :func:`previous`: read and check the earlier run (its ``model.pt``, its ``model_history.json``); refuse, before
  anything is charged, a missing or foreign model, another model kind, or a window with no new data (its cutoff
  not after the previous one's);
- :func:`old_model_config`: the previous model's own public scalers and tier thresholds for its evaluation;
- :func:`entry`, :func:`write_history`: one line per model with its window, its job's charge and the lifetime
  epsilon each partner's ledger shows after it;
- :func:`drift`: old vs new calibration error and tier accuracy on the same held-out customers, in words.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedinsight.core.errors import ConfigError
from fedinsight.core.files import write_private_atomic
from fedinsight.models.propensity import ModelBundle
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks.propensity.features import FEATURES, LabelWindow

HISTORY_FILE = "model_history.json"
DRIFT_POINTS = 0.02
"""The previous model's expected repurchase rate must miss by this much more than the new one's (2 points) for
the report to call it drift: both rates come from noisy DP releases, so a small gap is not called drift."""
MODEL_FILE = "model.pt"
PREVIOUS = "previous"
"""The name the previous model's metrics and curves carry in the summary (next to ``federated``)."""


@dataclass(frozen=True)
class Previous:
    """The model a recalibration starts from, its window and the history it belongs to."""

    bundle: ModelBundle
    window: LabelWindow
    history: list[dict[str, Any]]
    source: str


def _model_path(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"--recalibrate-from {source}: no propensity model there (expected a run folder with "
                          f"{MODEL_FILE}, or the {MODEL_FILE} itself)")
    return path


def previous(source: str, *, kind: str, window: LabelWindow | None) -> Previous:
    """The previous run's model and history, checked against the new job (ConfigError before any charge).
    ``window`` None: the new window is not known yet (a simulation's dataset decides it later), so only the model
    is checked; the plan checks again with the window."""
    path = _model_path(source)
    try:
        bundle = ModelBundle.load(path)
    except ConfigError:
        raise
    except Exception as exc:  # a damaged or foreign file: say which, no traceback
        raise ConfigError(f"--recalibrate-from {source}: {path.name} is not a propensity model ({exc})") from None
    if tuple(bundle.features) != tuple(FEATURES):
        raise ConfigError(f"--recalibrate-from {source}: the model was trained on other features "
                          f"({', '.join(bundle.features)}); retrain it from scratch")
    if bundle.kind != kind:
        raise ConfigError(f"--recalibrate-from {source}: the model is a {bundle.kind}; give --model {bundle.kind}")
    try:
        old_window = LabelWindow.from_config(bundle.config)
    except (KeyError, ConfigError):
        raise ConfigError(f"--recalibrate-from {source}: the model does not record its window") from None
    if window is not None and window.cutoff <= old_window.cutoff:
        raise ConfigError(f"the new window has no new data: its cutoff {window.cutoff.date()} is not after the "
                          f"previous model's {old_window.cutoff.date()}; move --start/--cutoff/--end to the newest "
                          "quarter")
    return Previous(bundle, old_window, _history(path.parent, bundle, old_window), str(path.parent))


def _history(folder: Path, bundle: ModelBundle, window: LabelWindow) -> list[dict[str, Any]]:
    """The earlier models' lines: the folder's history file, or one line for a model trained from scratch."""
    file = folder / HISTORY_FILE
    if file.is_file():
        try:
            entries = json.loads(file.read_text())["models"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{file} is damaged: it should hold {{\"models\": [...]}}") from None
        if isinstance(entries, list) and entries:
            return [dict(e) for e in entries]
    summary: dict[str, Any] = {}
    if (folder / "summary.json").is_file():
        try:
            summary = json.loads((folder / "summary.json").read_text())
        except ValueError:
            summary = {}
    privacy = summary.get("privacy") or {}
    return [{"job_id": str(bundle.config.get("job-id", "")), "folder": str(folder), "window": _window(window),
             "warm_started_from": None,
             "epsilon_charged": privacy.get("ledger_epsilon_charged_this_job"),
             "metrics": _metrics((summary.get("metrics") or {}).get("federated") or {}),
             "lifetime_epsilon": None}]


def _window(window: LabelWindow) -> dict[str, str]:
    return {"start": str(window.start.date()), "cutoff": str(window.cutoff.date()), "end": str(window.end.date())}


def _metrics(m: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in ("auc", "ece", "tier_accuracy", "log_loss"):
        value = m.get(key)
        out[key] = float(value) if isinstance(value, int | float) and math.isfinite(value) else None
    return out


def old_model_config(bundle: ModelBundle) -> dict[str, Any]:
    """What the previous model's evaluation message carries instead of the new job's: its own public scalers and
    predicted-tier thresholds (the true tiers stay the new window's, so both models are judged on one truth)."""
    cfg: dict[str, Any] = {"scaler-mean": list(bundle.scaler.mean), "scaler-std": list(bundle.scaler.std),
                           "target-mean": bundle.target.mean, "target-std": bundle.target.std}
    if all(math.isfinite(t) for t in bundle.tier_thresholds):
        cfg["tier-pred"] = list(bundle.tier_thresholds)
    return cfg


def initial_weights(bundle: ModelBundle) -> dict[str, np.ndarray]:
    """The warm start: the previous model's final (DP) weights."""
    return {k: np.asarray(v, dtype=np.float32) for k, v in bundle.weights.items()}


def entry(*, job_id: str, folder: str, window: LabelWindow, source: str, charged: float | None,
          metrics: dict[str, Any], lifetime: dict[str, float]) -> dict[str, Any]:
    """One model's line in the history: its window, where it started from, its charge and the lifetime total."""
    return {"job_id": job_id, "folder": folder, "window": _window(window), "warm_started_from": source,
            "epsilon_charged": charged, "metrics": _metrics(metrics),
            "lifetime_epsilon": {pid: round(float(e), 6) for pid, e in sorted(lifetime.items())}}


def with_ledger(history: list[dict[str, Any]], ledger: PrivacyLedger, partner_ids: list[str]
                ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Each model's epsilon as the ledger accounts it (its job's events, at each partner's budget delta: the largest
    partner), and each partner's lifetime epsilon: the ledger's RDP composition of every quarter's events at that
    same delta. It is not the plain sum of the quarters' figures -- composing at one delta can come out a little
    above it (measured: 0.9998 + 0.5 composed to 1.545) -- and it is the figure the budget is checked against. A
    model whose job is not in this ledger keeps the figure its own run recorded (``from_ledger`` false)."""
    lifetime: dict[str, float] = {}
    deltas: dict[str, float] = {}
    for pid in partner_ids:
        status = ledger.status(pid)
        lifetime[pid], deltas[pid] = status.epsilon_spent, status.delta
    out = []
    for e in history:
        per_partner = [compose_epsilon(events, deltas[pid]) for pid in partner_ids
                       if (events := ledger.job_events(pid, str(e.get("job_id", ""))))]
        if per_partner:
            e = {**e, "epsilon_charged": round(max(per_partner), 6), "from_ledger": True}
        else:
            e = {**e, "from_ledger": False}
        out.append(e)
    return out, lifetime


def write_history(out: Path, entries: list[dict[str, Any]]) -> Path:
    """``model_history.json`` beside the new ``model.pt``: every model of the line, oldest first."""
    path = out / HISTORY_FILE
    write_private_atomic(path, (json.dumps({"model": "propensity", "models": entries}, indent=2) + "\n").encode())
    return path


def rates(curves: dict[str, Any] | None) -> tuple[float, float] | None:
    """(mean predicted, observed) repurchase rate of the held-out customers, read off a model's calibration bins
    (post-processing of its DP evaluation release): calibration in the large, which a behaviour shift moves first.
    Totals over every bin, so the release's noise averages out far more than in the per-bin ECE."""
    cal = (curves or {}).get("calibration") or {}
    n = np.asarray(cal.get("n") or [], dtype=float)
    if not n.size or n.sum() <= 0:
        return None
    total = float(n.sum())
    return (float(np.dot(n, np.asarray(cal["predicted"], dtype=float)) / total),
            float(np.dot(n, np.asarray(cal["observed"], dtype=float)) / total))


def drift(old: dict[str, Any], new: dict[str, Any], old_window: LabelWindow, new_window: LabelWindow,
          old_curves: dict[str, Any] | None = None, new_curves: dict[str, Any] | None = None) -> dict[str, Any]:
    """Old vs new model on the newest held-out customers (both from DP evaluation releases), with sentences a
    marketer reads: the repurchase rate each model expects against the rate observed (calibration in the large),
    the calibration error (ECE: the average gap per probability bin, noisier) and the tier accuracy."""
    o, n = _metrics(old), _metrics(new)
    r_old, r_new = rates(old_curves), rates(new_curves)
    words = []
    large: dict[str, float] | None = None
    if r_old is not None and r_new is not None:
        observed = (r_old[1] + r_new[1]) / 2  # two DP estimates of the same customers' rate
        large = {"previous_predicted": r_old[0], "new_predicted": r_new[0], "observed": observed,
                 "previous_gap": r_old[0] - observed, "new_gap": r_new[0] - observed}
        words.append(f"Of the newest customers, {observed:.0%} bought again. The model trained on "
                     f"{old_window.start.date()} to {old_window.cutoff.date()} expected {r_old[0]:.0%}; the "
                     f"recalibrated model expects {r_new[0]:.0%}.")
    if o["ece"] is not None and n["ece"] is not None:
        words.append(f"Per probability band the previous model is off by {o['ece']:.1%} on average, the "
                     f"recalibrated one by {n['ece']:.1%} (both read off noisy DP releases: small differences are "
                     "noise).")
    if o["tier_accuracy"] is not None and n["tier_accuracy"] is not None:
        change = n["tier_accuracy"] - o["tier_accuracy"]
        words.append(f"It places {n['tier_accuracy']:.0%} of customers in the right value tier (was "
                     f"{o['tier_accuracy']:.0%}, {change:+.0%} points).")
    if large is not None:
        shifted = abs(large["previous_gap"]) - abs(large["new_gap"])
        words.append("Customer behaviour has changed since the previous model was trained: use the recalibrated "
                     "model." if shifted > DRIFT_POINTS else "Behaviour is much as it was: the two models agree.")
    return {"previous_window": _window(old_window), "window": _window(new_window), "previous": o, "new": n,
            "calibration_in_the_large": large,
            "ece_change": None if o["ece"] is None or n["ece"] is None else n["ece"] - o["ece"],
            "tier_accuracy_change": None if o["tier_accuracy"] is None or n["tier_accuracy"] is None
            else n["tier_accuracy"] - o["tier_accuracy"], "words": " ".join(words)}


__all__ = ["HISTORY_FILE", "PREVIOUS", "Previous", "drift", "entry", "initial_weights", "old_model_config",
           "previous", "with_ledger", "write_history"]

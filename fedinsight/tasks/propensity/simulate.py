"""What a propensity simulation adds: the dataset's label window, the baselines on the same split, and the
released model's exact evaluation (``federated_exact``: what the federation's DP evaluation estimated)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from fedinsight.core.errors import ConfigError, FedinsightError
from fedinsight.federation.task import Simulated
from fedinsight.models.propensity import ModelBundle
from fedinsight.privacy.holdout import holdout_key
from fedinsight.tasks.propensity.baselines import (
    bgnbd_baseline,
    centralized_baseline,
    pooled_split,
    released_model_exact,
)
from fedinsight.tasks.propensity.features import CDNOW_WINDOW, LabelWindow, synthetic_window
from fedinsight.tasks.propensity.options import HOLDOUT_KEY, PropensityOptions

log = logging.getLogger(__name__)
EXACT = "_released-model-exact"
"""The baselines' entry that carries the pooled split to :func:`merge`, which evaluates the released model."""


def window_options(options: PropensityOptions, sim: Simulated) -> dict[str, Any]:
    """The label window the dataset defines, for whichever of start/cutoff/end the user did not give."""
    if sim.dataset == "movielens-100k":
        raise ConfigError("movielens-100k has no purchases; use --dataset cdnow, synthetic or a folder")
    given = {"start": options.start, "cutoff": options.cutoff, "end": options.end}
    if all(given.values()):
        return {}
    if sim.builtin:
        window: LabelWindow = CDNOW_WINDOW if sim.dataset == "cdnow" else synthetic_window()
        planted = {"start": window.start.isoformat(), "cutoff": window.cutoff.isoformat(),
                   "end": window.end.isoformat()}
    else:
        planted = {k: v for k, v in sim.facts.get("window", {}).items() if k in given}
    chosen = {k: given[k] or planted.get(k, "") for k in given}
    if not all(chosen.values()):
        raise ConfigError(f"--dataset {sim.dataset}: give --start, --cutoff and --end (calibration from start to "
                          "cutoff, holdout from cutoff to end)")
    return {k: v for k, v in chosen.items() if v != given[k]}


def baselines(options: PropensityOptions, sim: Simulated, purpose: str) -> dict[str, Any]:
    """The same model centralized without DP, and BG/NBD, on the partners' views and the federation's split."""
    parts = sim.views(purpose)
    if sim.vaults is None:
        raise ConfigError("propensity baselines need the simulated partners' vaults (their holdout keys)")
    keys = {name: holdout_key(vault, HOLDOUT_KEY) for name, vault in sim.vaults().items()}
    # distributed noise: every partner's held-out customers enter the one pooled sum (no per-partner floor)
    split = pooled_split(parts, options.window, keys, **({"min_eval": 0} if options.distributed else {}))
    out = {"centralized": centralized_baseline(split, options.window, kind=options.model, seed=options.seed,
                                               caps=options.caps, tier_levels=(options.tier_mid, options.tier_high))}
    try:
        out["bgnbd"] = bgnbd_baseline(split, options.window)
    except FedinsightError as exc:
        log.warning("BG/NBD baseline skipped: %s", exc)
    if options.evaluate:  # the released model is evaluated exactly after the run (:func:`merge`)
        out[EXACT] = (split, options.window)
    return out


def merge(summary: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
    """The baselines beside the federated model: metrics, curves and the headline ratios."""
    exact = baselines.pop(EXACT, None)
    model = (summary.get("artifacts") or {}).get("model")
    if exact is not None and model and Path(model).is_file():  # what the noisy evaluation estimated, exactly
        released = ModelBundle.load(model)
        baselines["federated_exact"] = released_model_exact(*exact, released)
        source = (summary.get("recalibration") or {}).get("from")
        if source and (Path(source) / "model.pt").is_file():  # the previous model, exactly, on the same customers
            old = ModelBundle.load(Path(source) / "model.pt")
            old = replace(old, config={**old.config, "tier-true": released.config.get("tier-true")})
            baselines["previous_exact"] = released_model_exact(*exact, old)
    curves = summary.setdefault("curves", {})
    for name, values in baselines.items():
        values = dict(values)
        if "curves" in values:
            curves[name] = values.pop("curves")
        summary["metrics"][name] = values
    fed, cen = summary["metrics"].get("federated", {}), summary["metrics"].get("centralized", {})
    comparison = {}
    if fed.get("auc") is not None and cen.get("auc"):
        comparison["auc_federated_over_centralized"] = fed["auc"] / cen["auc"]
    if fed.get("auc") is not None and summary["metrics"].get("bgnbd", {}).get("auc") is not None:
        comparison["auc_federated_minus_bgnbd"] = fed["auc"] - summary["metrics"]["bgnbd"]["auc"]
    exact = summary["metrics"].get("federated_exact", {})
    if fed.get("auc") is not None and exact.get("auc") is not None:  # the DP evaluation's own error
        comparison["auc_noisy_minus_exact"] = fed["auc"] - exact["auc"]
        if cen.get("auc"):
            comparison["auc_exact_federated_over_centralized"] = exact["auc"] / cen["auc"]
    summary["comparison"] = comparison
    return summary

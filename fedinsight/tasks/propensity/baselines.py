"""Baselines that need everyone's rows in one place: for simulations only.

What a single data holder with the pooled customers of all partners would get, on exactly the split the
federation uses (each partner's held-out customers follow its own secret key, which the simulation driver
reads from each simulated partner's vault: a customer is held out in the pool if and only if it is held out
on its partner):

- the same model, trained centralized without DP, with an exactly fitted scaler and exact quantiles;
- BG/NBD (Fader, Hardie & Lee 2005) fitted on the pooled calibration summaries, ranking customers by
  expected purchases in the holdout window (a published peer model; no probabilities, so AUC and lift).

Both are evaluated on exactly the customers the federation evaluates: the held-out customers of the
partners that report evaluation (a partner with fewer than ``MIN_EVAL_CUSTOMERS`` held-out customers
suppresses it; the federation decides that on each partner's *noisy* count, so near the floor the two sets may
differ by a partner; with distributed noise every partner's held-out customers count).

This runs in the simulation driver on data it already holds; a real federation has no pooled data and
never runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import PartnerData
from fedinsight.models.bgnbd import fit_bgnbd
from fedinsight.models.metrics import assign_tiers, exact_curves, exact_metrics, lift_top_decile, roc_auc
from fedinsight.models.propensity import (
    ModelBundle,
    SharedScaler,
    TargetScaler,
    build_model,
    fit_centralized,
    predict,
)
from fedinsight.privacy.holdout import DEFAULT_TEST_SHARE, holdout_mask
from fedinsight.tasks.propensity.features import (
    FEATURES,
    FeatureCaps,
    LabelWindow,
    customer_table,
    spend_from_unit,
    unit_features,
    unit_spend,
)
from fedinsight.tasks.propensity.protocol import MIN_EVAL_CUSTOMERS

WEEK_DAYS = 7.0


@dataclass(frozen=True)
class PooledSplit:
    table: pd.DataFrame  # customer_table of all partners' customers
    test: np.ndarray  # held-out mask
    evaluated: np.ndarray  # held-out customers whose partner reports evaluation (enough held-out customers)


def pooled_split(partners: dict[str, PartnerData], window: LabelWindow, keys: dict[str, bytes],
                 share: float = DEFAULT_TEST_SHARE, min_eval: int = MIN_EVAL_CUSTOMERS) -> PooledSplit:
    """All partners' customers with the federation's held-out split (each partner's own ``keys[name]`` and
    ``share``, as the partner splits them); ``evaluated`` leaves out the held-out customers of partners that
    suppress their evaluation (fewer than ``min_eval``), as the federation does."""
    tables, tests, evaluated = [], [], []
    for name, data in partners.items():
        if data.transactions is None:
            continue
        table = customer_table(data.transactions, window)  # type: ignore[arg-type]
        test = holdout_mask(table.index, share, keys[name])
        tables.append(table)
        tests.append(test)
        evaluated.append(test & (test.sum() >= min_eval))
    if not tables:
        raise ConfigError("no partner has transactions; propensity needs purchases")
    table = pd.concat(tables)
    order = np.argsort(table.index.to_numpy(), kind="stable")
    return PooledSplit(table.iloc[order], np.concatenate(tests)[order], np.concatenate(evaluated)[order])


def _tier_cuts(spend: np.ndarray, levels: tuple[float, float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """True-tier thresholds (quantiles of spend) and the tier shares they imply (ties at zero included)."""
    mid, high = (float(np.quantile(spend, q)) for q in levels)
    return (mid, high), (float(np.mean(spend <= mid)), float(np.mean(spend <= high)))


def centralized_baseline(split: PooledSplit, window: LabelWindow, *, kind: str, seed: int,
                         caps: FeatureCaps | None = None, tier_levels: tuple[float, float] = (0.5, 0.8),
                         epochs: int = 30) -> dict[str, Any]:
    """The same model, trained on the pooled training customers without DP; metrics on the held-out ones."""
    caps = caps or FeatureCaps()
    table, test = split.table, split.test
    unit = unit_features(table, window, caps)
    buys, spend = table["buys_again"].to_numpy(float), table["spend"].to_numpy(float)
    t = unit_spend(spend, caps)
    scaler = SharedScaler.fit(unit[~test])
    buyers = (~test) & (buys > 0)
    target = TargetScaler.centred(buyers.sum(), t[buyers].sum(), caps.log_unit)
    model = fit_centralized(build_model(len(FEATURES), kind, seed), scaler.transform(unit[~test]), buys[~test],
                            target.transform(t[~test]), epochs=epochs, seed=seed)
    p, z_hat = predict(model, scaler.transform(unit))
    ltv = p * spend_from_unit(np.clip(target.inverse(z_hat), 0, 1), caps)
    true_cuts, shares = _tier_cuts(spend[~test], tier_levels)
    pred_cuts = (float(np.quantile(ltv[~test], shares[0])), float(np.quantile(ltv[~test], shares[1])))
    ev = split.evaluated
    true_tiers, predicted_tiers = assign_tiers(spend[ev], true_cuts), assign_tiers(ltv[ev], pred_cuts)
    metrics: dict[str, Any] = exact_metrics(buys[ev], p[ev], spend=spend[ev], ltv=ltv[ev], true_tiers=true_tiers,
                                            predicted_tiers=predicted_tiers)
    metrics["curves"] = exact_curves(buys[ev], p[ev], true_tiers=true_tiers, predicted_tiers=predicted_tiers)
    return metrics


def bgnbd_baseline(split: PooledSplit, window: LabelWindow) -> dict[str, Any]:
    """BG/NBD fitted on the pooled training customers, scored on the held-out ones (time in weeks)."""
    table, test, ev = split.table, split.test, split.evaluated
    x = table["frequency"].to_numpy(float)
    t_x, T = (table[c].to_numpy(float) / WEEK_DAYS for c in ("recency", "tenure"))
    model = fit_bgnbd(x[~test], t_x[~test], T[~test])
    score = model.expected_purchases(window.holdout_days / WEEK_DAYS, x[ev], t_x[ev], T[ev])
    y = table["buys_again"].to_numpy(float)[ev]
    return {"auc": roc_auc(y, score), "lift_top_decile": lift_top_decile(y, score), "n": float(ev.sum()),
            "params": {"r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b},
            "curves": exact_curves(y, score, probability=False)}


def released_model_exact(split: PooledSplit, window: LabelWindow, bundle: ModelBundle) -> dict[str, Any]:
    """The federation's released model evaluated *exactly* on the customers it was evaluated on (simulation only).

    Why: the federation's own evaluation is a DP release, noisy by design; a simulation, which holds every
    partner's rows anyway, can say how far the noisy figures are from the exact ones of the same model. A real
    federation cannot compute this and never does."""
    caps = FeatureCaps.from_config(bundle.config)
    table, ev = split.table, split.evaluated
    p, z_hat = predict(bundle.model(), bundle.scaler.transform(unit_features(table, window, caps)))
    ltv = p * spend_from_unit(np.clip(bundle.target.inverse(z_hat), 0, 1), caps)
    buys, spend = table["buys_again"].to_numpy(float), table["spend"].to_numpy(float)
    tiers: dict[str, np.ndarray] = {}
    if "tier-true" in bundle.config and np.all(np.isfinite(bundle.tier_thresholds)):
        true_cuts = tuple(float(v) for v in bundle.config["tier-true"])
        tiers = {"true_tiers": assign_tiers(spend[ev], true_cuts),  # type: ignore[arg-type]
                 "predicted_tiers": assign_tiers(ltv[ev], bundle.tier_thresholds)}
    return exact_metrics(buys[ev], p[ev], spend=spend[ev], ltv=ltv[ev], **tiers)

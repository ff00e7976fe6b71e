"""What a simulation compares the federated uplift model with, on the same held-out customers.

Only for one-machine simulations (pooled customers never exist in a real federation): every partner's audience
from its data view, split with the partner's own holdout key (so the held-out customers are exactly the ones the
partners evaluated on), then

- **centralized**: the same model, non-private, trained on the pooled training customers;
- **random**: random scores (what targeting without a model achieves);
- **federated (exact)**: the released model scored on the pooled held-out customers without noise -- the model's
  own quality, apart from the evaluation release's noise.

All three are computed with the same public score bins as the DP release and with exact per-customer ranking.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedinsight.federation.task import Simulated
from fedinsight.models.qini import QiniCurve, bin_counts, curve_from_bins, exact_curve
from fedinsight.models.uplift import UpliftNet, fit_centralized, predicted_uplift, set_weights
from fedinsight.privacy.holdout import DEFAULT_TEST_SHARE, holdout_key, holdout_mask
from fedinsight.tasks.uplift.features import FEATURES, Audience, audience
from fedinsight.tasks.uplift.options import HOLDOUT_KEY, SCORE_EDGES, UpliftOptions

POOLED = "_pooled"
"""The pooled audiences ride along to :func:`merge` (which scores the released model on them) and are dropped."""


def pooled(options: UpliftOptions, sim: Simulated) -> tuple[Audience, Audience]:
    """(training, held-out) customers of every partner, pooled; each partner's split by its own key."""
    views = sim.views("training")
    vaults = sim.vaults() if sim.vaults is not None else {}
    train, test = [], []
    for name, data in views.items():
        who = audience(data.events, data.transactions, options.campaign, options.arms)  # type: ignore[arg-type]
        mask = holdout_mask(who.ids, DEFAULT_TEST_SHARE, holdout_key(vaults[name], HOLDOUT_KEY)) \
            if name in vaults else np.zeros(len(who), dtype=bool)
        train.append(who.take(~mask))
        test.append(who.take(mask))
    return concat(train), concat(test)


def concat(parts: list[Audience]) -> Audience:
    import pandas as pd

    return Audience(pd.Index(np.concatenate([np.asarray(p.ids) for p in parts])),
                    *(np.concatenate([getattr(p, f) for p in parts])
                      for f in ("arm", "converted", "x", "order_value", "spend_year", "orders")))


def curves(uplift: np.ndarray, test: Audience, offer: int) -> tuple[QiniCurve, QiniCurve]:
    """(binned with the release's public bins, exact per customer) Qini curves of one offer's scores."""
    keep = (test.arm == 0) | (test.arm == offer + 1)
    score, treated, y = uplift[keep], test.arm[keep] == offer + 1, test.converted[keep]
    return curve_from_bins(*bin_counts(score, treated, y, np.asarray(SCORE_EDGES))), exact_curve(score, treated, y)


def scores(uplift: np.ndarray, test: Audience, options: UpliftOptions) -> dict[str, Any]:
    out = {}
    for o, name in enumerate(options.offers):
        binned, exact = curves(uplift[:, o] if uplift.ndim == 2 else uplift, test, o)
        out[name] = {"qini": binned.coefficient, "qini_exact_ranking": exact.coefficient,
                     "top_vs_random": binned.targeting_ratio(options.top_share)}
    return out


def centralized(options: UpliftOptions, sim: Simulated) -> dict[str, Any]:
    train, test = pooled(options, sim)
    if not len(train) or not len(test):
        return {}
    model = fit_centralized(train.x, train.arm, train.converted, len(options.arms), hidden=options.hidden,
                            knots=options.knot_values, heads=options.heads, basis=options.basis)
    rng = np.random.default_rng(0)  # public seed: random targeting is a reference, not a release
    return {"customers_train": int(len(train)), "customers_test": int(len(test)),
            "centralized": scores(predicted_uplift(model, test.x), test, options),
            "random": scores(rng.random((len(test), len(options.offers))), test, options),
            POOLED: (test, options)}


def merge(summary: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
    """``summary.json`` with the baselines, the released model's exact Qini on the same customers, and ratios."""
    baselines = dict(baselines)
    pooled_test = baselines.pop(POOLED, None)
    if pooled_test is not None and summary.get("weights"):
        test, options = pooled_test
        model = set_weights(UpliftNet(len(FEATURES), len(options.arms), options.hidden, options.knot_values,
                                      options.heads, options.basis),
                            {k: np.asarray(v, dtype=np.float32) for k, v in summary["weights"].items()})
        exact = scores(predicted_uplift(model, test.x), test, options)
        baselines["federated_exact"] = exact
        baselines["qini_ratio"] = {o: (exact[o]["qini"] / c["qini"] if c["qini"] > 0 else None)
                                   for o, c in baselines["centralized"].items()}
    if baselines:
        summary["baselines"] = baselines
    return summary

"""Score a partner's own customers with a trained propensity/LTV model, on the partner's premises.

The model file holds only weights and public preprocessing (the shared scaler, caps, the label window
length, tier thresholds); the partner's rows are read locally and the scores are written locally.
Nothing is sent anywhere; customers come from the partner's data view (:func:`score_partner`: features
computed by the partner's engine, its own ids read back alone; no table is loaded whole).

Scoring date: features describe the ``calibration_days`` before ``as_of`` and the scores predict the
``holdout_days`` after it -- the same window lengths the model was trained with. By default ``as_of`` is
the training cutoff (reproduces the training-time scores); pass the date you score for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError, DataValidationError, Problem
from fedinsight.federation.task import Partner
from fedinsight.models.metrics import TIERS, assign_tiers
from fedinsight.models.propensity import ModelBundle, predict
from fedinsight.tasks.propensity.customer_scan import customer_scan, table_from_scan
from fedinsight.tasks.propensity.features import (
    FeatureCaps,
    LabelWindow,
    customer_table,
    spend_from_unit,
    unit_features,
)


def score_partner(bundle: ModelBundle, partner: Partner, as_of: str | pd.Timestamp | None = None) -> pd.DataFrame:
    """Score the customers the partner's data view hands out (consent for the task's purpose, erasures applied);
    ``customer_id`` is the partner's own id again (resolved on the partner, from its own files)."""
    if "transactions" not in partner.columns():
        raise DataValidationError(Problem(f"partner {partner.partner_id}",
                                          "no transactions table (transactions.csv or .parquet)"))
    scores = score_scanned(bundle, partner, as_of)
    raw = partner.identities(scores["customer_id"])
    return scores.assign(customer_id=raw.to_numpy())


def score_scanned(bundle: ModelBundle, partner: Partner, as_of: str | pd.Timestamp | None = None) -> pd.DataFrame:
    """:func:`score_customers` from the partner's engine: the features' one scan (consent and erasure applied in the
    engine), ``customer_id`` still the token. Equal to :func:`score_customers` on the view's transactions, customer
    for customer; to the last bit wherever pandas' row-by-row float sums of money are exact (the scan's counts and
    days are exact, its money sums exact then rounded once; the same float maths follows)."""
    window = scoring_window(bundle, as_of)
    return score_table(bundle, table_from_scan(partner.scan(customer_scan(window)), window), window)


def scoring_window(bundle: ModelBundle, as_of: str | pd.Timestamp | None) -> LabelWindow:
    """The window of the model's training, moved so that its cutoff is ``as_of``."""
    trained = LabelWindow.from_config(bundle.config)
    if as_of is None:
        return trained
    try:
        cutoff = pd.Timestamp(as_of)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--as-of '{as_of}' is not a date (use YYYY-MM-DD)") from exc
    return LabelWindow(cutoff - (trained.cutoff - trained.start), cutoff, cutoff + (trained.end - trained.cutoff))


def score_customers(bundle: ModelBundle, transactions: pd.DataFrame, as_of: str | pd.Timestamp | None = None,
                    ) -> pd.DataFrame:
    """Per customer with a purchase in the calibration window: propensity, churn, expected LTV and tier."""
    window = scoring_window(bundle, as_of)
    return score_table(bundle, customer_table(transactions, window), window)


def score_table(bundle: ModelBundle, table: pd.DataFrame, window: LabelWindow) -> pd.DataFrame:
    """:func:`score_customers` from the per-customer feature table (the engine's or the pandas path's)."""
    caps = FeatureCaps.from_config(bundle.config)
    if table.empty:
        raise ConfigError(f"no customer bought anything between {window.start.date()} and {window.cutoff.date()}; "
                          "choose --as-of inside the data's time range")
    p, z_hat = predict(bundle.model(), bundle.scaler.transform(unit_features(table, window, caps)))
    ltv = p * spend_from_unit(np.clip(bundle.target.inverse(z_hat), 0, 1), caps)
    tiers = assign_tiers(ltv, bundle.tier_thresholds)
    return pd.DataFrame({
        "customer_id": table.index.astype(str),
        "propensity": p,
        "churn_probability": 1.0 - p,
        "expected_spend": ltv,
        "ltv_tier": pd.Categorical([TIERS[t] for t in tiers], categories=list(TIERS)),
        "as_of": window.cutoff,
        "horizon_days": window.holdout_days,
    })

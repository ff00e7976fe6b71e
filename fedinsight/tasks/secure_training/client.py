"""Partner side of secure training: local DP-SGD on log-RFM features, masked by SecAgg+ before it leaves.

What leaves the partner in clear: nothing data-dependent. The weight every partner reports is 1 (equal
partner weighting: a partner's customer count is itself confidential), and no metrics are sent; the
parameters go out only masked (:mod:`fedinsight.federation.secagg`). Before training, the round's DP-SGD
event passes the partner's own budget gate, so a coordinator that lies about its accounting still cannot
spend more of this partner's budget than the partner allowed. Batches are drawn from OS entropy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.federation.task import Partner
from fedinsight.models.dp_logreg import DpSgdSettings, make_model, set_weights, train_dp
from fedinsight.models.dp_logreg import get_weights as weights_of
from fedinsight.tasks.secure_training.customer_scan import engine_rfm_features
from fedinsight.tasks.secure_training.options import SecureTrainingOptions

NUM_FEATURES = 3


def rfm_features(transactions: pd.DataFrame, cutoff: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): log1p(frequency), log1p(mean order value), recency in years at ``cutoff``; y = buys after cutoff.

    Fixed transforms (no per-partner standardisation) so every partner's features mean the same thing.
    """
    tx = transactions[["customer_id", "timestamp", "amount"]]
    cut = pd.Timestamp(cutoff)
    before, after = tx[tx["timestamp"] <= cut], tx[tx["timestamp"] > cut]
    if before.empty:
        raise ConfigError(f"no transactions on or before the cutoff {cutoff}; choose a later --cutoff")
    grouped = before.groupby("customer_id")
    freq = grouped.size()
    aov = grouped["amount"].mean()
    recency = (cut - grouped["timestamp"].max()).dt.days / 365.25
    x = np.column_stack([np.log1p(freq.to_numpy()), np.log1p(aov.reindex(freq.index).to_numpy()),
                         recency.reindex(freq.index).to_numpy()])
    y = freq.index.isin(after["customer_id"].unique()).astype(np.float64)
    return x.astype(np.float64), y


def training_data(partner: Partner, options: SecureTrainingOptions) -> tuple[np.ndarray, np.ndarray]:
    """The features and labels :func:`rfm_features` defines, computed by the partner's engine (its transactions are
    never loaded whole into pandas: :mod:`.customer_scan`)."""
    x, y = engine_rfm_features(partner, options.cutoff)
    if options.sample_rate * len(x) < 2:  # DP holds for any batch size; this only guards against useless runs
        raise ConfigError(f"sample rate {options.sample_rate} x {len(x)} customers gives expected batches "
                          "under 2; raise sample-rate")
    return x, y


def secure_fit(partner: Partner, parameters: list[np.ndarray], config: dict[str, Any]
               ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """One round of local DP-SGD from the global weights; ``secaggplus_mod`` masks the result before it leaves."""
    options = SecureTrainingOptions.from_run_config(config)
    x, y = training_data(partner, options)
    partner.gate.spend(str(config["job-id"]), [options.round_event()], job_epsilon=options.epsilon,
                       job_delta=options.delta, kind="training",
                       description=f"secure training round {config.get('round', '?')}: DP-SGD under SecAgg+")
    model = make_model(x.shape[1])
    set_weights(model, parameters)
    train_dp(model, x, y, DpSgdSettings(noise_multiplier=options.noise_multiplier,
                                        max_grad_norm=options.max_grad_norm, sample_rate=options.sample_rate,
                                        steps=options.local_steps, learning_rate=options.lr))
    return weights_of(model), 1, {}


def hello_facts(partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
    """No facts; but the partner checks here, before any budget is charged, that it can train at all and that
    the whole job fits its own cap (a SecAgg+ round cannot go on without one of its partners)."""
    options = SecureTrainingOptions.from_run_config(config)
    training_data(partner, options)
    refusal = partner.gate.binding(str(config["job-id"]), [options.round_event()] * options.rounds,
                                   job_epsilon=options.epsilon, job_delta=options.delta)
    if refusal is not None:
        raise BudgetExceededError(refusal.reason + "; refused before the job started")
    return {}

"""Partner side of secure-aggregation training (SecAgg+ around DP-SGD).

Flower 1.41 runs SecAgg+ only on its legacy path: the server's ``SecAggPlusWorkflow`` sends plain
``train`` messages through four stages, and ``secaggplus_mod`` on the client answers the key-exchange
stages itself and, in the "collect masked vectors" stage, calls this handler for the real training
result, then masks it with pairwise and private masks before it leaves the partner. So this module
registers the *default* train action (message type ``train``) with ``secaggplus_mod`` and answers it
NumPyClient-style (``handle_legacy_message_from_msgtype``).

What leaves the partner in clear: nothing data-dependent. The weight every partner reports is 1
(equal partner weighting: a partner's customer count is itself confidential), and no metrics are sent;
the parameters go out only masked.

Privacy is enforced here too, not only on the coordinator: before training, the partner charges the
round's DP-SGD event to its *own* ledger (``node_config['local-ledger']``, budget ``local-epsilon``)
and refuses to train if that would exceed it — a coordinator that lies about its accounting still
cannot spend more of this partner's budget than the partner allowed.

Until the propensity features of the training work land, features are the classic log-RFM triple as
of the job's cutoff date, label = bought again after the cutoff.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from flwr.app import ConfigRecord, Context, Message, RecordDict

from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.partner.clientapp import app
from fedinsight.partner.view import load_partner_data, partner_id

HELLO_ACTION = "secagg_hello"
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


def _settings(config: dict[str, Any]):  # type: ignore[no-untyped-def]
    from fedinsight.models.dp_logreg import DpSgdSettings

    return DpSgdSettings(noise_multiplier=float(config["noise-multiplier"]),
                         max_grad_norm=float(config["max-grad-norm"]), sample_rate=float(config["sample-rate"]),
                         steps=int(config["local-steps"]), learning_rate=float(config["learning-rate"]))


def charge_local_budget(context: Context, settings: Any, *, job_key: str) -> float | None:
    """Charge this round to the partner's own ledger if it has one (deployment); None in simulation."""
    node = context.node_config
    if "local-ledger" not in node:
        return None
    from fedinsight.privacy.ledger import PrivacyLedger, dpsgd_event

    pid = partner_id(context)
    ledger = PrivacyLedger(str(node["local-ledger"]))
    ledger.ensure_budget(pid, float(node.get("local-epsilon", 10.0)), float(node.get("local-delta", 1e-6)))
    event = dpsgd_event(settings.noise_multiplier, settings.sample_rate, settings.steps)
    try:
        after = ledger.charge(pid, event, job_id=job_key, kind="training", description="secagg DP-SGD round",
                              requester="coordinator")
    except BudgetExceededError as exc:
        raise BudgetExceededError(f"partner {pid} refuses to train: its local budget is spent ({exc})") from None
    return after[pid]


def secure_fit(context: Context, parameters: list[np.ndarray], config: dict[str, Any]
               ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """One round of local DP-SGD from the global weights; ``secaggplus_mod`` masks the result before it leaves."""
    from fedinsight.models.dp_logreg import get_weights as weights_of
    from fedinsight.models.dp_logreg import make_model, set_weights, train_dp

    settings = _settings(config)
    data = load_partner_data(context, config, purpose="training")  # consent for training only
    if data.transactions is None:
        raise ConfigError(f"partner {partner_id(context)} has no transactions table to train on")
    x, y = rfm_features(data.transactions, str(config["cutoff"]))
    if settings.sample_rate * len(x) < 2:  # DP holds for any batch size; this only guards against useless runs
        raise ConfigError(f"sample rate {settings.sample_rate} x {len(x)} customers gives expected batches "
                          "under 2; raise sample-rate")
    charge_local_budget(context, settings, job_key=f"run-{context.run_id}-round-{config['round']}")
    model = make_model(x.shape[1])
    set_weights(model, parameters)
    train_dp(model, x, y, settings)
    return weights_of(model), 1, {}


def secagg_hello(msg: Message, context: Context) -> Message:
    """Tell the coordinator which partner (ledger name) this node is, before anything is computed."""
    return Message(RecordDict({"hello": ConfigRecord({"partner-id": partner_id(context)})}), reply_to=msg)


app.query(HELLO_ACTION)(secagg_hello)

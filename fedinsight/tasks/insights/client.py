"""The partner side of DP insights: ``@app.query("insights")`` (message type ``query.insights``).

Two operations, both answered on the partner's premises:

- ``hello``: the partner's id and which tables/columns it holds (no customer data). The coordinator
  needs the ids to charge each partner's privacy budget *before* anyone computes anything.
- ``compute``: the batch of queries. The partner computes each query's contribution-bounded aggregate
  (:mod:`fedinsight.tasks.insights.aggregates`), works out the sensitivity *itself* from the declared
  bounds, and adds noise from OpenDP's samplers (:mod:`fedinsight.privacy.mechanisms`) at the noise
  multiplier the coordinator priced. Only the noisy vectors leave; the coordinator never sees an exact
  figure of any partner.

A partner can refuse batches that are too expensive for its own taste: ``--node-config
"insights-max-epsilon=2.0"`` makes it compose the batch's releases itself (RDP) and refuse above that.
"""

from __future__ import annotations

import json
from typing import Any

from flwr.app import ConfigRecord, Context, Error, Message, RecordDict

from fedinsight.core.errors import BudgetExceededError, ConfigError, FedinsightError
from fedinsight.data.schema import PartnerData
from fedinsight.partner.clientapp import app
from fedinsight.partner.view import load_partner_data, partner_id
from fedinsight.privacy.allocation import QueryNoise, query_noise
from fedinsight.privacy.ledger import compose_epsilon
from fedinsight.privacy.mechanisms import gaussian, laplace
from fedinsight.tasks.insights.aggregates import LocalAggregate, compute
from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features

TASK = "insights"


def table_columns(data: PartnerData) -> dict[str, list[str]]:
    """Which canonical tables and columns the partner holds (schema only)."""
    return {name: [str(c) for c in frame.columns] for name, frame in data.tables().items()}  # type: ignore[attr-defined]


def _noise(query: dict[str, Any]) -> QueryNoise:
    noise = query.get("noise") or {}
    return query_noise(str(noise.get("mechanism")), noise.get("multiplier"))  # type: ignore[arg-type]


def check_batch_cost(batch: dict[str, Any], max_epsilon: float | None) -> float:
    """The batch's epsilon as this partner computes it; refused above the partner's own limit."""
    delta = float(batch.get("delta", 1e-6))
    epsilon = compose_epsilon([_noise(q).event for q in batch["queries"]], delta)
    if max_epsilon is not None and epsilon > float(max_epsilon) + 1e-9:
        raise BudgetExceededError(
            f"this partner accepts at most epsilon {float(max_epsilon):g} per insight batch; "
            f"batch {batch.get('batch_id', '?')} would cost {epsilon:.4g} (ask for less epsilon or fewer queries)"
        )
    return epsilon


def compute_batch(data: PartnerData, batch: dict[str, Any], *, max_epsilon: float | None = None) -> dict[str, Any]:
    """Noisy, contribution-bounded aggregates of every query in ``batch`` (what the partner sends back)."""
    if not isinstance(batch.get("queries"), list) or not batch["queries"]:
        raise ConfigError("an insight batch needs a non-empty list of queries")
    check_batch_cost(batch, max_epsilon)
    features = customer_features(data, FeatureRules.from_dict(batch.get("features") or {}))
    results: dict[str, Any] = {}
    for query in batch["queries"]:
        agg = compute(str(query["kind"]), features, dict(query.get("params") or {}))
        results[str(query["name"])] = noisy_reply(agg, _noise(query))
    return results


def noisy_reply(agg: LocalAggregate, noise: QueryNoise) -> dict[str, Any]:
    """One query's reply: the normalised vector plus OpenDP noise calibrated to the partner's own bound."""
    vector = agg.vector()
    if noise.mechanism == "laplace":
        noisy = laplace(vector, sensitivity=agg.l1, epsilon=1.0 / noise.multiplier)
    else:
        noisy = gaussian(vector, sensitivity=agg.l2, noise_multiplier=noise.multiplier)
    return {
        "layout": agg.layout(),
        "values": [float(v) for v in noisy.values],
        "mechanism": noisy.mechanism,
        "multiplier": noise.multiplier,
        "sensitivity": noisy.sensitivity,
        "noise_variance": noisy.variance,  # per coordinate of the normalised vector
    }


USER_ERROR_CODE = 4_000
"""Flower error code of a reply that carries a :class:`FedinsightError` (``reason`` = "Type: message")."""


def _answer(msg: Message, context: Context) -> ConfigRecord:
    config = dict(msg.content["config"])
    op = config.get("op")
    pid = partner_id(context)
    if op == "hello":
        tables = table_columns(load_partner_data(context, config))
        return ConfigRecord({"partner-id": pid, "tables": json.dumps(tables)})
    if op == "compute":
        batch = json.loads(str(config["batch"]))
        limit = context.node_config.get("insights-max-epsilon")
        results = compute_batch(load_partner_data(context, config), batch,
                                max_epsilon=None if limit is None else float(limit))  # type: ignore[arg-type]
        return ConfigRecord({"partner-id": pid, "results": json.dumps(results)})
    raise ConfigError(f"unknown insights operation {op!r} (expected hello or compute)")


@app.query(TASK)
def query_insights(msg: Message, context: Context) -> Message:
    """Answer the coordinator's ``hello`` or ``compute`` for an insight batch.

    A user-fixable problem on the partner (invalid data, a batch above the partner's own limit) is
    answered as an error reply naming the problem; anything else is a bug and raises.
    """
    try:
        reply = _answer(msg, context)
    except FedinsightError as exc:
        return Message(Error(code=USER_ERROR_CODE, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
    return Message(RecordDict({"reply": reply}), reply_to=msg)

"""The partner side of DP insights: ``query.insights``, phase ``compute``.

The partner computes each query's contribution-bounded aggregate (:mod:`.aggregates`), works out the
sensitivity *itself* from the declared bounds, and adds noise from OpenDP's samplers
(:mod:`fedinsight.privacy.mechanisms`) at the noise multiplier the coordinator priced -- after the batch's
events have passed the partner's own budget gate. Only the noisy vectors leave; the coordinator never
sees an exact figure of any partner. In hello (the framework's) it states which tables and columns it
holds: schema only.
"""

from __future__ import annotations

import json
from typing import Any

from flwr.app import ConfigRecord, Message, MetricRecord

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import TABLES, PartnerData
from fedinsight.federation.messages import config_of, reply
from fedinsight.federation.task import Partner, phase_of
from fedinsight.privacy.allocation import QueryNoise, query_noise
from fedinsight.privacy.mechanisms import gaussian, laplace
from fedinsight.tasks.insights import discovery, engine_discovery
from fedinsight.tasks.insights.aggregates import LocalAggregate, compute
from fedinsight.tasks.insights.customer_features import FeatureRules, Features, checked_zone, customer_features
from fedinsight.tasks.insights.engine_features import engine_features

RESULTS = "results"


def table_columns(data: PartnerData) -> dict[str, list[str]]:
    """Which canonical tables and columns the partner holds (schema only): a mapped partner's columns kept under
    its own names (``商品编码``, ``Lineitem sku``) are neither needed by any query nor the coordinator's business,
    and a non-ASCII name would break the hello release's pattern."""
    return {name: [str(c) for c in frame.columns if name not in TABLES or str(c) in TABLES[name].column_names]
            for name, frame in data.tables().items()}  # type: ignore[attr-defined]


def hello_facts(partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
    """Schema only, read through the partner's engine (its tables' headers and a PII sample; no table whole)."""
    return {"tables": json.dumps(partner.columns(), sort_keys=True),
            "timezone": checked_zone(partner.timezone(), partner.partner_id)}


def _noise(query: dict[str, Any]) -> QueryNoise:
    noise = query.get("noise") or {}
    return query_noise(str(noise.get("mechanism")), noise.get("multiplier"))  # type: ignore[arg-type]


def _queries(batch: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(batch.get("queries"), list) or not batch["queries"]:
        raise ConfigError("an insight batch needs a non-empty list of queries")
    return list(batch["queries"])


def compute_batch(data: PartnerData, batch: dict[str, Any]) -> dict[str, Any]:
    """Noisy, contribution-bounded aggregates of every query in ``batch`` (the wire batch, noise assigned), from
    tables in memory (in-process runs); a partner computes through its engine (:func:`partner_features`)."""
    _queries(batch)
    return features_batch(customer_features(data, FeatureRules.from_dict(batch.get("features") or {})), batch)


def partner_features(partner: Partner, batch: dict[str, Any]) -> Features:
    """The batch's per-customer features (and the rows its queries read), computed by the partner's engine:
    the partner's tables are never loaded whole into pandas (:mod:`.engine_features`)."""
    return engine_features(partner, FeatureRules.from_dict(batch.get("features") or {}), _queries(batch))


def features_batch(features: Features, batch: dict[str, Any]) -> dict[str, Any]:
    """Noisy, contribution-bounded aggregates of every query in ``batch`` over ``features``."""
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


def query(msg: Message, partner: Partner) -> Message:
    """``discover``: the keys of the spec's dimensions that clear the threshold; ``compute``: the batch's noisy
    aggregates. Either once its cost has passed this partner's gate."""
    config = config_of(msg)
    if phase_of(msg) == "discover":
        return _discover(msg, partner, config)
    if phase_of(msg) != "compute":
        raise ConfigError(f"unknown insights step '{phase_of(msg)}' (expected discover or compute)")
    wire = json.loads(str(config["wire"]))
    events = [_noise(q).event for q in wire["queries"]]
    partner.gate.spend(str(config["job-id"]), events, job_epsilon=float(config["epsilon-job"]),
                       job_delta=float(wire["delta"]), kind="query",
                       description="insights: " + ", ".join(str(q["name"]) for q in wire["queries"]))
    results = features_batch(partner_features(partner, wire), wire)
    return reply(msg, **{RESULTS: MetricRecord({name: r["values"] for name, r in results.items()})})


def _discover(msg: Message, partner: Partner, config: dict[str, Any]) -> Message:
    wire = json.loads(str(config["wire"]))
    noise = _noise(wire)
    names = ", ".join(str(d.get("name")) for d in wire.get("dimensions") or [])
    event = discovery.charged_event(noise, float(wire["max_delta"]))  # the threshold's delta too, as sent
    partner.gate.spend(str(config["job-id"]), [event], job_epsilon=float(config["epsilon-job"]),
                       job_delta=float(wire["delta"]), kind="query", description=f"insights key discovery: {names}")
    found = engine_discovery.discover(partner, wire)
    return reply(msg, **{discovery.RECORD: ConfigRecord({discovery.RECORD: discovery.reply_text(found)})})

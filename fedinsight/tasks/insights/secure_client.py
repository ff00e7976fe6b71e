"""Partner side of distributed-noise insights (``noise-model = distributed-secagg``): one SecAgg+ share per batch.

Flower 1.41 runs SecAgg+ only on its legacy path, so the batch arrives as a plain ``train`` message handled
by the partner's one legacy train handler (:mod:`fedinsight.federation.secagg`) under ``secaggplus_mod``,
which hands fit configs with ``task = insights`` to :func:`secure_fit`. What the partner sends: every query's
contribution-bounded vector plus *its share* of the discrete-Gaussian noise (:mod:`.distributed`), masked by
SecAgg+; no metrics, weight 1. It never sends anything unmasked.

The partner does not take the coordinator's word for the encoding: it derives the grid from the batch's public
numbers (its own bounds, the priced multipliers, the job's partner count, trust settings and
``max-customers``), checks SecAgg+'s own state against it
(:func:`~fedinsight.federation.secagg.check_secagg_setup`), spends the batch's events at its own budget gate
before any noisy share exists, and leaves the drop-out guard its tolerance, so that a sum that lost more noise
shares than tolerated is never unmasked.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from flwr.app import ConfigRecord

from fedinsight.core.errors import ConfigError, SecureAggregationError
from fedinsight.federation.secagg import GUARD_RECORD, check_own_trust, check_secagg_setup, from_legacy_config
from fedinsight.federation.task import Partner
from fedinsight.privacy.allocation import query_noise
from fedinsight.tasks.insights.aggregates import compute
from fedinsight.tasks.insights.customer_features import FeatureRules
from fedinsight.tasks.insights.distributed import MECHANISM, InsightsEncoding, blocks_of, shares_of
from fedinsight.tasks.insights.engine_features import engine_features

SECURE_PHASE = "secagg"


def secure_config(config: dict[str, Any]) -> tuple[int, int, int, int]:
    """(partners, honest, max_dropouts, max_customers) from a fit config: the job's public numbers."""
    try:
        return (int(config["secagg-partners"]), int(config.get("honest-partners", 0)),
                int(config.get("max-dropouts", 0)), int(config["max-customers"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"a distributed-noise insight batch lacks its public parameters ({exc})") from None


def secure_fit(partner: Partner, parameters: list[np.ndarray], config: dict[str, Any]
               ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """The batch's exact bounded vectors + this partner's noise shares, for SecAgg+ to mask."""
    config = from_legacy_config(config)
    if config.get("phase") != SECURE_PHASE:
        raise ConfigError(f"unknown insights secure step '{config.get('phase')}' (expected {SECURE_PHASE})")
    wire = json.loads(str(config["wire"]))
    queries = wire.get("queries")
    if not isinstance(queries, list) or not queries:
        raise ConfigError("an insight batch needs a non-empty list of queries")
    noises = {str(q["name"]): query_noise(str((q.get("noise") or {}).get("mechanism")),
                                          (q.get("noise") or {}).get("multiplier")) for q in queries}
    if any(n.mechanism != "gaussian" for n in noises.values()):
        raise ConfigError("distributed-noise insights are Gaussian only; refused")
    partners, honest, max_dropouts, max_customers = secure_config(config)
    shares = shares_of(partners, honest, max_dropouts)
    check_own_trust(partner, honest or partners)
    context = partner.context
    features = engine_features(partner, FeatureRules.from_dict(wire.get("features") or {}), queries)
    if features.n > max_customers:
        raise SecureAggregationError(f"this partner has {features.n} customers, more than the job's public bound "
                                     f"--max-customers {max_customers}; refused (raise the bound)")
    aggs = {str(q["name"]): compute(str(q["kind"]), features, dict(q.get("params") or {})) for q in queries}
    names = [str(q["name"]) for q in queries]
    enc = InsightsEncoding.for_batch(
        blocks_of(names, {n: a.vector().size for n, a in aggs.items()}, {n: v.multiplier for n, v in noises.items()},
                  {n: a.l2 for n, a in aggs.items()}),
        partners=partners, shares=shares, max_customers=max_customers)
    check_secagg_setup(context, enc.flower_settings(), partners, max_dropouts)
    partner.gate.spend(str(config["job-id"]), [n.event for n in noises.values()],
                       job_epsilon=float(config["epsilon-job"]), job_delta=float(wire["delta"]), kind="query",
                       description=f"insights ({MECHANISM}): " + ", ".join(noises))
    vector = enc.encode({n: a.vector() for n, a in aggs.items()})
    context.state.config_records[GUARD_RECORD] = ConfigRecord({"max-dropouts": max_dropouts, "partners": partners})
    return [vector], 1, {}

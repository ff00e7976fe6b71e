"""What an insights simulation adds (the preset and reference date a dataset implies), and in-process runs.

The in-process helpers (:func:`local_aggregates`, :func:`release_in_process` ...) run the partners' own
aggregation and noising code on tables given to them, without Flower: the exact, contribution-bounded
"truth" that tests check intervals against and benchmarks re-noise many times.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.federation.task import Simulated
from fedinsight.tasks.insights.aggregates import compute
from fedinsight.tasks.insights.catalogue import PRESETS, InsightBatch
from fedinsight.tasks.insights.client import compute_batch, noisy_reply
from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features
from fedinsight.tasks.insights.options import InsightsOptions
from fedinsight.tasks.insights.server import price_batch, release_batch
from fedinsight.tasks.insights.spec import canonical

DEFAULT_BUDGET = 10.0
"""Each simulated partner's budget when the run folder's ledger has none yet: several batches fit."""


def simulation_options(options: InsightsOptions, sim: Simulated) -> dict[str, Any]:
    """A built-in dataset's preset and reference date; a synthetic folder's reference date."""
    out: dict[str, Any] = {}
    if sim.builtin and sim.dataset in PRESETS and options.preset != sim.dataset:
        out["preset"] = sim.dataset
    spec = options.parsed_spec()
    if spec is not None and sim.builtin:  # a built-in dataset's vocabulary is public: declare what the spec left out
        vocabulary = PRESETS.get(sim.dataset, PRESETS["synthetic"])
        given = {"channels": vocabulary["channels"], "campaigns": vocabulary["campaigns"],
                 "purchase_channels": vocabulary["tx_channels"]}
        keys = {**{k: v for k, v in given.items() if v}, **spec.keys}
        if keys != spec.keys:
            out["spec"] = canonical(spec.model_copy(update={"keys": keys}))
    if spec is not None and spec.window.end:
        return out
    if not options.as_of and not options.batch:
        if sim.builtin:
            out["as_of"] = str(PRESETS[sim.dataset if sim.dataset in PRESETS else "synthetic"]["as_of"])
        elif "window" in sim.facts:
            end = pd.Timestamp(sim.facts["window"]["end"])
            out["as_of"] = (end + pd.Timedelta(days=1)).date().isoformat()
        else:
            raise ConfigError(f"--as-of is required for the folder dataset {sim.dataset} (the reference date, "
                              "e.g. 2026-01-01)")
    return out


# --- in-process runs (tests, benchmarks): the same partner and coordinator code, without Flower -----

def local_aggregates(partners: dict[str, Any], batch: InsightBatch) -> list[dict[str, Any]]:
    """Each partner's exact, contribution-bounded aggregates (query name -> LocalAggregate), before noise.

    Only for one-machine runs on synthetic or public data: the "truth" that intervals are checked
    against, and the input that benchmarks re-noise many times.
    """
    out = []
    for data in partners.values():
        features = customer_features(data, FeatureRules.from_dict(batch.features.model_dump(mode="json")))
        out.append({q.name: compute(q.kind, features, q.params()) for q in batch.queries})  # type: ignore[attr-defined]
    return out


def noisy_replies(aggregates: list[dict[str, Any]], batch: InsightBatch) -> list[dict[str, Any]]:
    """Partner replies with fresh noise (the partner's own noising code) on given exact aggregates."""
    noises = price_batch(batch)
    return [{name: noisy_reply(agg, noises[name]) for name, agg in partner.items()} for partner in aggregates]


def exact_replies(aggregates: list[dict[str, Any]], batch: InsightBatch) -> list[dict[str, Any]]:
    """Replies without noise (``noise_variance`` 0): released as-is they are the exact bounded truth."""
    noises = price_batch(batch)
    return [{name: {"layout": agg.layout(), "values": agg.vector().tolist(), "mechanism": noises[name].mechanism,
                    "multiplier": noises[name].multiplier, "sensitivity": agg.l2, "noise_variance": 0.0}
             for name, agg in partner.items()} for partner in aggregates]


def partner_replies(partners: dict[str, Any], batch: InsightBatch, *, exact: bool = False) -> list[dict[str, Any]]:
    """Each partner's reply to ``batch``: through :func:`fedinsight.tasks.insights.client.compute_batch`, or exact."""
    if exact:
        return exact_replies(local_aggregates(partners, batch), batch)
    noises = price_batch(batch)
    wire = batch.wire({n: {"mechanism": q.mechanism, "multiplier": q.multiplier} for n, q in noises.items()})
    return [compute_batch(data, wire) for data in partners.values()]


def release_in_process(partners: dict[str, Any], batch: InsightBatch, *, exact: bool = False) -> list[dict]:
    """Released insights of ``batch`` over in-memory partners (no ledger charge: callers price themselves)."""
    return release_batch(batch, price_batch(batch), partner_replies(partners, batch, exact=exact))

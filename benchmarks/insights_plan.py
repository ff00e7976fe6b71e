"""Benchmark of the insights budget planner: predicted vs measured noise sd and suppression rate (prints JSON).

For a few federations (customers, partners, epsilon) and the ``marketing-overview`` preset with the synthetic
data's keys declared, it compares, per insight, side by side:

- ``sd``: the planner's noise sd of a count cell vs the empirical sd of (released - exact) over many noise draws
  (the partners' own noising code on their exact, contribution-bounded aggregates);
- ``suppressed``: the planner's expected share of suppressed cells vs the measured share (mean over the draws),
  with the planner given the federation's sizes three ways -- ``true`` (exact sizes, which only a benchmark
  knows), ``census`` (the charged noisy count ``insights plan --count`` runs, here in-process) and
  ``customers`` (only the number of customers declared; the rest assumed).

The sd must agree (it is exact arithmetic); the suppression forecast is a model (counts spread evenly over each
dimension's keys), and this benchmark is where its error is measured.

Usage::

    python benchmarks/insights_plan.py                 # three federations, 30 draws each (~3 min on 2 cores)
    python benchmarks/insights_plan.py --quick         # one small federation, 10 draws
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from fedinsight.data.schema import PartnerData
from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.tasks.insights.catalogue import PRESETS
from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features
from fedinsight.tasks.insights.options import InsightsOptions
from fedinsight.tasks.insights.planner import SUPPRESSION_MEASURES, census_spec, plan_job, sizes_from_census
from fedinsight.tasks.insights.results import combine
from fedinsight.tasks.insights.server import price_batch, release_batch
from fedinsight.tasks.insights.simulate import local_aggregates, noisy_replies, release_in_process
from fedinsight.tasks.insights.spec import Sizes, canonical, parse_spec

P = PRESETS["synthetic"]
SPEC = {"preset": "marketing-overview", "window": {"end": P["as_of"]},
        "keys": {"channels": P["channels"], "campaigns": P["campaigns"], "purchase_channels": P["tx_channels"]}}


def true_sizes(partners: dict[str, PartnerData], as_of: str) -> Sizes:
    """Exact sizes of the federation as the partners' features see them (consent, rows before as_of)."""
    totals = {"customers": 0, "purchasers": 0, "exposed": 0, "clicked": 0, "participated": 0, "converted": 0}
    for data in partners.values():
        f = customer_features(data, FeatureRules(as_of=as_of))
        totals["customers"] += f.n
        totals["purchasers"] += int((f.purchases >= 1).sum())
        for stage, name in enumerate(("exposed", "clicked", "participated", "converted")):
            totals[name] += len(np.unique(f.events.cust[f.event_stage == stage]))
    return Sizes(**totals)


def measure(partners: dict[str, PartnerData], epsilon: float, draws: int) -> dict[str, Any]:
    spec = parse_spec({**SPEC, "epsilon": epsilon})
    job = InsightsOptions(spec=canonical(spec)).spec_job(requester="benchmark")
    batch, _ = job.batch()
    noises = price_batch(batch)
    exact = local_aggregates(partners, batch)
    first = {q.name: SUPPRESSION_MEASURES[q.kind][0] for q in batch.queries}  # type: ignore[attr-defined]
    truth = {n: sum(p[n].by_name()[m].values for p in exact) for n, m in first.items()}
    errors: dict[str, list[np.ndarray]] = {n: [] for n in first}
    shares: dict[str, list[float]] = {n: [] for n in first}
    for _ in range(draws):
        replies = noisy_replies(exact, batch)
        for name, m in first.items():
            combined = combine(name, [r[name] for r in replies], noises[name]).measures[m]
            errors[name].append(np.ravel(combined.values - truth[name]))
        for insight in release_batch(batch, noises, replies):
            shares[insight["name"]].append(insight["suppressed_groups"] / max(insight["groups"], 1))
    census_batch, _ = InsightsOptions(spec=census_spec(spec, 0.2),
                                      as_of=P["as_of"]).spec_job(requester="census").batch()
    census = sizes_from_census(release_in_process(partners, census_batch))
    exact_sizes = true_sizes(partners, P["as_of"])
    forecasts = {
        "true": plan_job(job, len(partners), sizes=exact_sizes, search=False),
        "census": plan_job(job, len(partners), sizes=census, source="census", search=False),
        "customers": plan_job(job, len(partners), sizes=Sizes(customers=exact_sizes.customers), search=False),
    }
    rows = {}
    for ins in forecasts["true"].insights:
        sample = np.concatenate(errors[ins.name])
        rows[ins.name] = {
            "sd_predicted": round(ins.classes[0].noise_sd, 2),
            "sd_measured": round(float(np.std(sample, ddof=1)), 2),
            "suppressed_measured": round(float(np.mean(shares[ins.name])), 3),
            **{f"suppressed_predicted_{k}": round(next(i for i in p.insights if i.name == ins.name).suppressed_share,
                                                  3) for k, p in forecasts.items()},
        }
    return {"insights": rows,
            "overall": {"suppressed_measured": round(float(np.mean([r["suppressed_measured"] for r in rows.values()])),
                                                     3),
                        **{f"suppressed_predicted_{k}": round(p.suppressed_share or 0.0, 3)
                           for k, p in forecasts.items()},
                        "census_sizes": census.model_dump(), "true_sizes": exact_sizes.model_dump()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small federation, few draws")
    parser.add_argument("--draws", type=int, default=None, help="noise draws per federation (default 30; quick 10)")
    args = parser.parse_args(argv)
    settings = [(3_300, 2, 1.0)] if args.quick else [(3_300, 2, 1.0), (20_000, 3, 1.0), (60_000, 5, 2.0)]
    draws = args.draws or (10 if args.quick else 30)
    out: dict[str, Any] = {"draws": draws, "federations": []}
    started = time.perf_counter()
    for customers, k, epsilon in settings:
        frames, _ = generate_partner_frames(SynthConfig(customers=customers, partners=k, seed=1))
        partners = {p: PartnerData(p, **t) for p, t in frames.items()}
        t0 = time.perf_counter()
        result = measure(partners, epsilon, draws)
        out["federations"].append({"customers": customers, "partners": k, "epsilon": epsilon,
                                   "seconds": round(time.perf_counter() - t0, 1), **result})
        print(f"{customers} customers, {k} partners, epsilon {epsilon}: done", file=sys.stderr)
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

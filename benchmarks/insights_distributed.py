"""Benchmark: insights with local noise vs distributed noise under SecAgg+, side by side in one run (prints JSON).

Question (issue 14, item 4): with local noise each of K partners adds the full noise, so the released sum carries
K times the variance the guarantee needs; the worst funnel step rate of a small channel was off by ~2.7 percentage
points at 1 M customers, 10 partners, epsilon 1 (goal 0.5). How much does ``noise-model = distributed-secagg``
(each partner adds a discrete-Gaussian share, only the sum is seen) recover at the same epsilon?

What runs, on one synthetic federation (``fedinsight data synth``'s generator, cached under ``--out``):

1. every partner's exact, contribution-bounded aggregates, once (the partners' own code);
2. ``--draws`` releases per noise model and batch, from those aggregates:
   - local: each partner's own OpenDP Gaussian noise (:func:`noisy_reply`), summed by the coordinator;
   - distributed: each partner's real encoding (:class:`InsightsEncoding`: its vector / L2 on the SecAgg+ grid plus
     its OpenDP discrete-Gaussian share), summed exactly as SecAgg+'s unmasking yields it (modular masks cancel;
     the masking itself is exercised by tests/flows/insights/test_distributed_flow.py), decoded and released;
3. per noise model: each query's noise sd per unit of its vector, the worst funnel step-rate error in
   percentage points and the worst segment count relative error against plain pandas on the pooled partners
   (benchmarks/insights.py's ``accuracy``), and how often the 95 % intervals hold the exact bounded aggregate;
4. side by side, distributed noise as it was released before the last change of weights
   (``distributed-secagg-before``: segment profiles at weight 0.5 each and the funnel stages at
   ``BEFORE_STAGE_WEIGHTS``; same epsilon, delta and charge), so "before" and "after" come from one run on the
   same exact aggregates;
5. ``goal``: the goal figures of the goal batch side by side (before / after), with the delta the run used.

Two batches: the whole catalogue at epsilon 1 and the goal batch (segment profiles and funnels) at epsilon 1, both
at the delta a real job on these partners runs at (``--delta`` to override): the smallest of 1e-6 and every
partner's ceiling (fedinsight/federation/delta.py), 1e-7 when a partner holds more than 100,000 customers.

Usage::

    python benchmarks/insights_distributed.py                       # 1 M customers, 10 partners, delta 1e-7
    python benchmarks/insights_distributed.py --out runs/b1m --draws 100 --batches goal_batch   # the goal figures
    python benchmarks/insights_distributed.py --delta 1e-6          # another delta than the partners' default
    python benchmarks/insights_distributed.py --customers 200000 --draws 3
    python benchmarks/insights_distributed.py --flower       # + the goal batch through Flower and SecAgg+
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from insights import GOAL_BATCH, accuracy, ensure_data, folder_as_of, pooled_truth, read_partner  # noqa: E402

from fedinsight.federation.budget import default_job_delta, delta_ceiling  # noqa: E402
from fedinsight.privacy.mechanisms import gaussian_noise_multiplier  # noqa: E402
from fedinsight.tasks.insights.aggregates import LocalAggregate, Measure  # noqa: E402
from fedinsight.tasks.insights.catalogue import InsightBatch, default_batch  # noqa: E402
from fedinsight.tasks.insights.distributed import InsightsEncoding, blocks_of  # noqa: E402
from fedinsight.tasks.insights.results import paired_estimates  # noqa: E402
from fedinsight.tasks.insights.server import price_batch, release_batch  # noqa: E402
from fedinsight.tasks.insights.simulate import exact_replies, local_aggregates, noisy_replies  # noqa: E402

BEFORE = "distributed-secagg-before"
"""Distributed noise with the weights before this change, for comparison in the same run."""
BEFORE_STAGE_WEIGHTS = (1.0, 0.4, math.sqrt(1.42), math.sqrt(1.42))
BEFORE_QUERY_WEIGHTS = {"segment-profile-rfm": 0.5, "segment-profile-lifecycle": 0.5}


def reweighted(batch: InsightBatch, weights: dict[str, float]) -> InsightBatch:
    """``batch`` with some queries' budget weights replaced (the rest as they are)."""
    return batch.model_copy(update={"queries": [q.model_copy(update={"weight": weights.get(q.name, q.weight)})
                                                for q in batch.queries]})


def restaged(aggregates: list[dict[str, Any]], batch: InsightBatch, weights: tuple[float, ...]) -> list[dict[str, Any]]:
    """The funnels released with stage weights ``weights`` (the same exact counts, in units of ``1 / w_s``), with
    their bounds ``L2 = sqrt(m sum w_s^2)``, ``L1 = m sum w_s`` as :func:`~fedinsight.tasks.insights.aggregates.funnel`
    declares them."""
    funnels = {q.name for q in batch.queries if q.kind == "funnel"}
    out = []
    for partner in aggregates:
        row = {}
        for name, agg in partner.items():
            if name in funnels:
                old = tuple(1.0 / x for x in agg.measures[0].scale)  # type: ignore[union-attr]
                m = agg.l2**2 / sum(x * x for x in old)  # groups a customer can be in
                agg = LocalAggregate(tuple(Measure(x.name, x.dims, x.values, scale=tuple(1.0 / w for w in weights))
                                           for x in agg.measures),
                                     l1=m * sum(weights), l2=math.sqrt(m * sum(w * w for w in weights)))
            row[name] = agg
        out.append(row)
    return out


def coverage(insights: list[dict], exact: dict[str, dict]) -> tuple[int, int]:
    """95 % intervals (noise only) that hold the exact bounded aggregate, and how many there are."""
    hit = total = 0
    for released in insights:
        for _, est, ref in paired_estimates(released["result"], exact[released["name"]]["result"]):
            if "sampling_sd" not in est:
                hit += est["ci95"][0] - 1e-9 <= ref["value"] <= est["ci95"][1] + 1e-9
                total += 1
    return hit, total


def encoding(batch: InsightBatch, aggregates: list[dict[str, Any]], max_customers: int) -> InsightsEncoding:
    noises, first = price_batch(batch), aggregates[0]
    names = [q.name for q in batch.queries]
    return InsightsEncoding.for_batch(
        blocks_of(names, {n: first[n].vector().size for n in names}, {n: noises[n].multiplier for n in names},
                  {n: first[n].l2 for n in names}),
        partners=len(aggregates), shares=len(aggregates), max_customers=max_customers)


def distributed_release(batch: InsightBatch, aggregates: list[dict[str, Any]], enc: InsightsEncoding) -> list[dict]:
    """Every partner's encoded share, summed (what SecAgg+ unmasks), decoded and released."""
    noises = price_batch(batch)
    total = sum(enc.encode({n: agg.vector() for n, agg in partner.items()}) for partner in aggregates)
    k = len(aggregates)
    sums = enc.decode(total / k, k)  # Flower hands the coordinator the average of the unmasked vectors
    summed = {q.name: {"layout": aggregates[0][q.name].layout(), "values": sums[q.name].tolist(),
                       "mechanism": "gaussian", "multiplier": noises[q.name].multiplier,
                       "sensitivity": aggregates[0][q.name].l2, "noise_variance": enc.sum_noise_sd(q.name, k) ** 2}
              for q in batch.queries}
    return release_batch(batch, noises, [summed], contributors=k, noise_model="distributed-secagg")


def compare(batch: InsightBatch, aggregates: list[dict[str, Any]], truth: dict, draws: int,
            max_customers: int) -> dict[str, Any]:
    """Both noise models on the same exact aggregates: noise sd per query, funnel and segment errors per draw."""
    noises, k = price_batch(batch), len(aggregates)
    enc = encoding(batch, aggregates, max_customers)
    out: dict[str, Any] = {"queries": {}, "local": [], "distributed-secagg": []}
    for q in batch.queries:
        l2 = aggregates[0][q.name].l2
        local_sd = math.sqrt(k) * noises[q.name].multiplier * l2
        out["queries"][q.name] = {"local_noise_sd": round(local_sd, 4),
                                  "distributed_noise_sd": round(enc.sum_noise_sd(q.name, k), 4),
                                  "ratio": round(enc.sum_noise_sd(q.name, k) / local_sd, 4),
                                  "rounding_inflation": round(enc.inflation(q.name), 5),
                                  "coordinates": aggregates[0][q.name].vector().size}
    before_batch = reweighted(batch, BEFORE_QUERY_WEIGHTS)
    before = restaged(aggregates, batch, BEFORE_STAGE_WEIGHTS)
    enc_before = encoding(before_batch, before, max_customers)
    for q in batch.queries:
        out["queries"][q.name]["distributed_noise_sd_before"] = round(enc_before.sum_noise_sd(q.name, k), 4)
    exact = {i["name"]: i for i in release_batch(batch, noises, exact_replies(aggregates, batch))}
    out[BEFORE] = []
    timing = {"local": 0.0, "distributed-secagg": 0.0, BEFORE: 0.0}
    hits = {model: [0, 0] for model in timing}
    for _ in range(draws):
        started = time.perf_counter()
        local = release_batch(batch, noises, noisy_replies(aggregates, batch))
        timing["local"] += time.perf_counter() - started
        started = time.perf_counter()
        dist = distributed_release(batch, aggregates, enc)
        timing["distributed-secagg"] += time.perf_counter() - started
        started = time.perf_counter()
        dist_before = distributed_release(before_batch, before, enc_before)
        timing[BEFORE] += time.perf_counter() - started
        for model, insights in (("local", local), ("distributed-secagg", dist), (BEFORE, dist_before)):
            acc = accuracy({i["name"]: i for i in insights}, truth)
            h, n = coverage(insights, exact)
            hits[model][0] += h
            hits[model][1] += n
            out[model].append({"funnel_worst_pp": acc["funnel_rate_abs_error_pp"]["max"],
                               "funnel_mean_pp": acc["funnel_rate_abs_error_pp"]["mean"],
                               "segment_count_worst_rel": acc["segment_count_rel_error"]["max"],
                               "suppressed_groups": sum(i["suppressed_groups"] for i in insights)})
    for model in timing:
        runs = out[model]
        worst = [r["funnel_worst_pp"] for r in runs]
        seg = [r["segment_count_worst_rel"] for r in runs]
        out[model] = {"funnel_worst_pp_mean": round(statistics.mean(worst), 4),
                      "funnel_worst_pp_max": round(max(worst), 4),
                      "funnel_mean_pp": round(statistics.mean(r["funnel_mean_pp"] for r in runs), 4),
                      "segment_count_worst_rel_mean": round(statistics.mean(seg), 5),
                      "segment_count_worst_rel_max": round(max(seg), 5), "goal_segment_rel": 0.01,
                      "interval_coverage": round(hits[model][0] / hits[model][1], 4),
                      "intervals": hits[model][1], "goal_coverage": [0.93, 0.97],
                      "suppressed_groups_mean": statistics.mean(r["suppressed_groups"] for r in runs),
                      "goal_funnel_pp": 0.5, "met_in_every_draw": bool(max(worst) <= 0.5),
                      "seconds_per_release": round(timing[model] / draws, 3)}
    out["grid"] = {k2: v for k2, v in enc.as_dict().items() if k2 != "queries"}
    return out


def calibration(epsilon: float, delta: float) -> dict[str, Any]:
    """The noise multiplier of one Gaussian release of the whole (epsilon, delta) as the ledger certifies it (RDP, the
    optimal conversion of the zCDP guarantee OpenDP's samplers and the discrete-Gaussian sum carry), next to what the
    exact continuous-Gaussian privacy profile (PLD) would allow -- shown, not used (docs/privacy.md says why)."""
    from dp_accounting import calibrate_dp_mechanism, dp_event
    from dp_accounting.pld import PLDAccountant

    rdp = gaussian_noise_multiplier(epsilon, delta)
    pld = float(calibrate_dp_mechanism(PLDAccountant, dp_event.GaussianDpEvent, epsilon, delta, bracket_interval=None))
    return {"multiplier_certified_rdp": round(rdp, 4), "multiplier_exact_gaussian_pld_not_used": round(pld, 4),
            "ratio": round(pld / rdp, 4)}


def goal(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's goal figures for the goal batch, before and after this change, side by side."""
    batch = report["goal_batch"]
    queries = batch["queries"]
    rows: dict[str, Any] = {}
    for label, model in (("before", BEFORE), ("after", "distributed-secagg")):
        r = batch[model]
        rows[label] = {"funnel_worst_pp_mean": r["funnel_worst_pp_mean"],
                       "segment_count_worst_rel_mean": r["segment_count_worst_rel_mean"],
                       "interval_coverage": r["interval_coverage"]}
    rows["after"]["noise_sd_vs_local"] = {name: q["ratio"] for name, q in queries.items()}
    rows["goals"] = {"funnel_worst_pp": 0.5, "segment_count_rel": 0.01, "interval_coverage": [0.93, 0.97],
                     "noise_sd_vs_local": round(1 / math.sqrt(report["config"]["partners"]), 4)}
    after = rows["after"]
    rows["met"] = bool(after["funnel_worst_pp_mean"] <= 0.5 and after["segment_count_worst_rel_mean"] <= 0.01
                       and 0.93 <= after["interval_coverage"] <= 0.97)
    return {"delta": report["config"]["delta"], **rows}


def flower_run(data: Path, partners: int, epsilon: float, delta: float, bound: int, truth: dict,
               out: Path) -> dict[str, Any]:
    """The goal batch with distributed noise through Flower's simulation runtime and real SecAgg+ (one run)."""
    from fedinsight.simulation.options import SimulationOptions
    from fedinsight.simulation.run import simulate

    start = time.perf_counter()
    batch = default_batch("synthetic", epsilon=epsilon, delta=delta, only=GOAL_BATCH, as_of=folder_as_of(data))
    sim = SimulationOptions(dataset=str(data), partners=partners, seed=0, out=str(out / "flower-distributed"),
                            budget=1_000.0, overwrite=True)
    summary = simulate("insights", sim, {"epsilon": epsilon, "batch": batch.model_dump_json(),
                                         "noise_model": "distributed-secagg", "max_customers": bound}).summary
    insights = {i["name"]: i for i in
                json.loads((out / "flower-distributed" / "insights.json").read_text())["insights"]}
    acc = accuracy(insights, truth)
    return {"seconds": round(time.perf_counter() - start, 1), "noise_model": summary["privacy"]["noise_model"],
            "secagg_contributors": summary["privacy"]["secagg"]["contributors"],
            "epsilon_spent_max": summary["privacy"]["epsilon_spent_max"],
            "funnel_worst_pp": round(acc["funnel_rate_abs_error_pp"]["max"], 4),
            "funnel_mean_pp": round(acc["funnel_rate_abs_error_pp"]["mean"], 4),
            "segment_count_worst_rel": round(acc["segment_count_rel_error"]["max"], 5)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--draws", type=int, default=5, help="noise draws per noise model and batch")
    parser.add_argument("--max-customers", type=int, default=0,
                        help="public bound per partner for the SecAgg+ grid (0: the largest partner's customer "
                             "count, a benchmark shortcut: a real job states a public bound)")
    parser.add_argument("--delta", type=float, default=None,
                        help="the batch's delta (default: the one a real job on these partners runs at, the smallest "
                             "of 1e-6 and every partner's ceiling, fedinsight/federation/delta.py)")
    parser.add_argument("--batches", default="catalogue,goal_batch", help="which batches to measure")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-insights"))
    parser.add_argument("--flower", action="store_true", help="also run the goal batch with distributed noise "
                        "through Flower's simulation runtime and SecAgg+ (a few more minutes)")
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    data = ensure_data(args.out, args.customers, args.partners, seed=1)
    truth = pooled_truth(data, args.partners)
    partners = {f"partner-{k}": read_partner(data / f"partner-{k}") for k in range(args.partners)}
    bound = args.max_customers or max(len(p.customers) for p in partners.values())  # type: ignore[attr-defined]
    delta = args.delta if args.delta is not None else default_job_delta(
        [delta_ceiling(len(p.customers)) for p in partners.values()])  # type: ignore[attr-defined]
    partial = args.out / "insights_distributed.partial.json"
    report: dict[str, Any] = {"config": {"customers": args.customers, "partners": args.partners,
                                         "epsilon": args.epsilon, "delta": delta, "draws": args.draws,
                                         "max_customers": bound},
                              "calibration": calibration(args.epsilon, delta)}
    for label, only in (("catalogue", None), ("goal_batch", GOAL_BATCH)):
        if label not in args.batches.split(","):
            continue
        batch = default_batch("synthetic", epsilon=args.epsilon, delta=delta, only=only)
        t0 = time.perf_counter()
        aggregates = local_aggregates(partners, batch)
        report[label] = {"aggregate_seconds": round(time.perf_counter() - t0, 1),
                         **compare(batch, aggregates, truth, args.draws, bound)}
        partial.write_text(json.dumps(report, indent=2))  # kept if a later step fails
    if args.flower:
        report["flower_goal_batch_distributed"] = flower_run(data, args.partners, args.epsilon, delta, bound, truth,
                                                             args.out)
    if "goal_batch" in report:
        report["goal"] = goal(report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of DP insights: accuracy, interval coverage and partner throughput (prints JSON).

Goals (issue 5), all measured in one run:

- accuracy: at epsilon = 1 per query batch, 10 partners, 1 million synthetic customers -- relative error
  of segment counts <= 1 %, funnel conversion rates <= 0.5 percentage points (against plain pandas on
  the pooled data), through Flower's simulation runtime (``simulate("insights", ...)``). Two batches are run:
  the whole catalogue at epsilon 1, and the "goal batch" (segment profiles and funnels) at epsilon 1.
- coverage: 95 % intervals cover the exact aggregate 93-97 % of the time, over many noise draws (the
  partners' own noising code on their exact aggregates; no data is recomputed per draw), and the A/B
  interval covers the *planted* lift over many synthetic data seeds.
- throughput: one partner computes the whole catalogue (features, bounds, OpenDP noise) over ~10 million
  transaction rows at >= 0.5x the speed of the equivalent plain pandas group-bys on the same data.

Usage::

    python benchmarks/insights.py                      # full sizes (~15-20 min on 2 cores)
    python benchmarks/insights.py --quick              # small sizes, a smoke run (~3 min)
    python benchmarks/insights.py --no-heatmap         # golden-hours without its weekday x hour heatmap

``--no-heatmap`` gives the figures of the catalogue before the heatmap existed (the same measures and
bounds), so its cost in noise and speed can be read side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from insights_baseline import pandas_catalogue  # noqa: E402

from fedinsight.data.schema import PartnerData  # noqa: E402
from fedinsight.data.synth import SynthConfig, generate_partner_frames, write_synthetic  # noqa: E402
from fedinsight.partner.policy_init import init_federation  # noqa: E402
from fedinsight.privacy.suppression import CONFIDENCE_95  # noqa: E402
from fedinsight.simulation.options import SimulationOptions  # noqa: E402
from fedinsight.simulation.run import simulate  # noqa: E402
from fedinsight.tasks.insights.catalogue import PRESETS, InsightBatch, default_batch, parse_batch  # noqa: E402
from fedinsight.tasks.insights.options import InsightsOptions  # noqa: E402
from fedinsight.tasks.insights.results import paired_estimates  # noqa: E402
from fedinsight.tasks.insights.server import price_batch, release_batch  # noqa: E402
from fedinsight.tasks.insights.simulate import (  # noqa: E402
    exact_replies,
    local_aggregates,
    noisy_replies,
    simulation_options,
)

ERR = Console(stderr=True)
P = PRESETS["synthetic"]
GOAL_BATCH = ["segment-profile-rfm", "segment-profile-lifecycle", "funnel-by-channel", "funnel-by-segment"]
RATES = (("click_rate", "click", "exposure"), ("participate_rate", "participate", "click"),
         ("convert_rate", "convert", "participate"), ("conversion", "convert", "exposure"))


HEATMAP = True
"""Whether golden-hours releases its weekday x hour heatmap (``--no-heatmap`` switches it off)."""


def catalogue(**kwargs: Any) -> InsightBatch:
    """``default_batch("synthetic", ...)`` with golden-hours' heatmap set as ``HEATMAP`` says."""
    batch = default_batch("synthetic", **kwargs)
    if HEATMAP:
        return batch
    data = batch.model_dump(mode="json")
    for query in data["queries"]:
        if query["kind"] == "golden_hours":
            query["heatmap"] = False
    return parse_batch(data)


def baseline(data: PartnerData) -> dict[str, Any]:
    """The plain-pandas catalogue on one partner (with the heatmap's group-by when the catalogue has it)."""
    return pandas_catalogue(data, P["as_of"], P["channels"], P["campaigns"], P["tx_channels"], heatmap=HEATMAP)


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=ERR)


def read_partner(folder: Path) -> PartnerData:
    """A partner's tables straight from Parquet (the benchmark's own reader: no validation cost)."""
    tables = {f.stem: pd.read_parquet(f) for f in folder.glob("*.parquet") if f.stem != "interactions"}
    return PartnerData(folder.name, **tables)


def ensure_data(root: Path, customers: int, partners: int, seed: int) -> Path:
    data = root / f"synth-{customers}-{partners}-{seed}"
    truth = data / "ground_truth.json"
    if truth.exists() and json.loads(truth.read_text())["config"]["customers"] == customers:
        init_federation(data)  # a folder from before partners had to declare identifier columns
        return data
    with progress() as bar:
        task = bar.add_task(f"generating {customers:,} customers", total=customers)
        write_synthetic(SynthConfig(customers=customers, partners=partners, seed=seed), data, overwrite=True,
                        progress=lambda done, total: bar.update(task, completed=done), finalize=init_federation)
    return data


# --- accuracy through Flower ----------------------------------------------------------------------

def folder_as_of(data: Path) -> str:
    """The reference date a simulation gives this synthetic folder (the day after its generator's window)."""
    from fedinsight.federation.task import Simulated
    from fedinsight.simulation.federation import Federation

    fed = Federation.from_folder(data)
    sim = Simulated(dataset=fed.dataset, builtin=False, data_root=fed.root, partner_names=fed.names, out_dir=fed.root,
                    seed=0, views=fed.views, facts=fed.facts)
    return str(simulation_options(InsightsOptions(), sim)["as_of"])


def pooled_truth(data: Path, partners: int) -> dict[str, pd.DataFrame]:
    """Plain pandas per partner, summed: counts of disjoint customers add up across partners."""
    total: dict[str, pd.DataFrame] = {}
    with progress() as bar:
        task = bar.add_task("plain pandas truth per partner", total=partners)
        for k in range(partners):
            part = baseline(read_partner(data / f"partner-{k}"))
            for key in ("profile_rfm", "profile_lifecycle", "funnel_channel", "funnel_segment"):
                total[key] = part[key] if key not in total else total[key].add(part[key], fill_value=0)
            bar.advance(task)
    return total


def accuracy(insights: dict[str, dict], truth: dict[str, pd.DataFrame]) -> dict[str, Any]:
    seg_err = []
    for name, key, by in (("segment-profile-rfm", "profile_rfm", "rfm_segment"),
                          ("segment-profile-lifecycle", "profile_lifecycle", "lifecycle_stage")):
        for g in insights[name]["result"]["groups"]:
            true = float(truth[key]["customers"].get(g[by], 0))
            if not g.get("suppressed") and true > 0:
                seg_err.append(abs(g["customers"]["value"] - true) / true)
    rate_err: dict[str, list[float]] = {r: [] for r, _, _ in RATES}
    for name, key, by in (("funnel-by-channel", "funnel_channel", "channel"),
                          ("funnel-by-segment", "funnel_segment", "rfm_segment")):
        table = truth[key]
        for g in insights[name]["result"]["groups"]:
            if g[by] not in table.index:
                continue
            row = table.loc[g[by]]
            for rate, num, den in RATES:
                est = g["rates"][rate]
                if not est.get("suppressed") and row[den] > 0:
                    rate_err[rate].append(abs(est["value"] - row[num] / row[den]) * 100)
    all_rates = [e for v in rate_err.values() for e in v]
    return {
        "segment_count_rel_error": {"max": max(seg_err), "mean": statistics.mean(seg_err), "n": len(seg_err),
                                    "goal_max": 0.01, "met": bool(max(seg_err) <= 0.01)},
        "funnel_rate_abs_error_pp": {
            "max": max(all_rates), "mean": statistics.mean(all_rates), "n": len(all_rates),
            "max_by_rate": {r: max(v) for r, v in rate_err.items() if v}, "goal_max": 0.5,
            "met": bool(max(all_rates) <= 0.5),
        },
    }


def golden_hours_noise(insight: dict) -> dict[str, Any]:
    """Noise sd of one golden-hours count cell (the same for every hour, weekday and slot cell) and how many
    heatmap cells were released: what the heatmap costs the marginals, side by side with ``--no-heatmap``."""
    groups = insight["result"]["groups"]
    sds = {c["customers"]["noise_sd"] for g in groups for c in g["by_hour"].values() if not c.get("suppressed")}
    slots = [c for g in groups for day in g.get("by_slot", {}).values() for c in day.values()]
    return {"heatmap": any("by_slot" in g for g in groups), "count_noise_sd": max(sds) if sds else None,
            "slot_cells": len(slots), "slot_cells_suppressed": sum(bool(c.get("suppressed")) for c in slots),
            "peak_slots": {g[insight["query"]["by"]]: g.get("peak_slot") for g in groups}}


def flower_runs(data: Path, partners: int, epsilon: float, out: Path) -> dict[str, Any]:
    truth = pooled_truth(data, partners)
    results = {}
    for label, only in (("whole_catalogue", None), ("goal_batch", GOAL_BATCH)):
        ERR.print(f"[bold]Flower run[/]: {label} at epsilon {epsilon} on {partners} partners")
        start = time.perf_counter()
        batch = catalogue(epsilon=epsilon, only=only, as_of=folder_as_of(data))
        sim = SimulationOptions(dataset=str(data), partners=partners, seed=0, out=str(out / label), budget=1_000.0,
                                overwrite=True)
        summary = simulate("insights", sim, {"epsilon": epsilon, "batch": batch.model_dump_json()}).summary
        seconds = time.perf_counter() - start
        insights = {i["name"]: i for i in json.loads((out / label / "insights.json").read_text())["insights"]}
        results[label] = {"seconds": round(seconds, 1), "queries": len(insights),
                          "epsilon_batch": summary["privacy"]["epsilon_batch"],
                          "epsilon_spent_max": summary["privacy"]["epsilon_spent_max"],
                          "suppressed_groups": summary["suppressed_groups"], **accuracy(insights, truth)}
        if "golden-hours" in insights:
            results[label]["golden_hours"] = golden_hours_noise(insights["golden-hours"])
    return results


# --- coverage -------------------------------------------------------------------------------------

def noise_coverage(data: Path, partners: int, epsilon: float, draws: int) -> dict[str, Any]:
    """Coverage of the exact bounded aggregate by noise-only intervals, over ``draws`` fresh noise draws."""
    partner_data = {f"partner-{k}": read_partner(data / f"partner-{k}") for k in range(partners)}
    out: dict[str, Any] = {}
    for label, mechanism, margin in (("gaussian", "gaussian", 0.0), ("laplace", "laplace", 0.0),
                                     ("gaussian_margin_1.645", "gaussian", CONFIDENCE_95)):
        batch = catalogue(epsilon=epsilon, mechanism=mechanism, suppression_margin_sd=margin)
        aggs = local_aggregates(partner_data, batch)
        noises = price_batch(batch)
        exact = {i["name"]: i for i in release_batch(batch, noises, exact_replies(aggs, batch))}
        hits: dict[str, list[int]] = {}
        with progress() as bar:
            task = bar.add_task(f"noise draws ({label})", total=draws)
            for _ in range(draws):
                for released in release_batch(batch, noises, noisy_replies(aggs, batch)):
                    h = hits.setdefault(released["kind"], [0, 0])
                    for _, est, ref in paired_estimates(released["result"], exact[released["name"]]["result"]):
                        if "sampling_sd" not in est:
                            h[0] += est["ci95"][0] - 1e-9 <= ref["value"] <= est["ci95"][1] + 1e-9
                            h[1] += 1
                bar.advance(task)
        total = [sum(v[0] for v in hits.values()), sum(v[1] for v in hits.values())]
        out[label] = {"coverage": total[0] / total[1], "intervals": total[1],
                          "by_kind": {k: round(v[0] / v[1], 4) for k, v in hits.items()},
                          "goal": [0.93, 0.97], "met": bool(0.93 <= total[0] / total[1] <= 0.97)}
    return out


def planted_conversion(truth: dict, lift: float) -> float:
    funnel, shares = truth["funnel"], truth["segments"]["shares"]
    return sum(p_ch * p_seg * r["click"] * r["participate"] * min(1.0, r["convert"] * lift)
               for channel, p_ch in funnel["channel_mix"].items()
               for seg, p_seg in shares.items()
               for r in [funnel["step_rates"][channel][seg]])


def ab_coverage(seeds: int, customers: int, partners: int, epsilon: float) -> dict[str, Any]:
    """A/B difference intervals (sampling + DP noise) against the planted population difference."""
    covered = {"campaign-1": 0, "campaign-2": 0}
    significant = {"campaign-1": 0, "campaign-2": 0}
    batch = catalogue(epsilon=epsilon)
    with progress() as bar:
        task = bar.add_task("A/B over data seeds", total=seeds)
        for seed in range(seeds):
            frames, truth = generate_partner_frames(SynthConfig(customers=customers, partners=partners,
                                                                seed=1000 + seed))
            parts = {p: PartnerData(p, **t) for p, t in frames.items()}
            aggs = local_aggregates(parts, batch)
            released = {i["name"]: i for i in release_batch(batch, price_batch(batch), noisy_replies(aggs, batch))}
            for camp in released["ab-lift"]["result"]["campaigns"]:
                lift = truth["ab_lift"][camp["campaign"]]
                planted = planted_conversion(truth, lift) - planted_conversion(truth, 1.0)
                if camp["difference"].get("suppressed"):
                    continue
                lo, hi = camp["difference"]["ci95"]
                covered[camp["campaign"]] += lo <= planted <= hi
                significant[camp["campaign"]] += bool(camp["significant"])
            bar.advance(task)
    return {"seeds": seeds, "customers": customers, "partners": partners, "epsilon_batch": epsilon,
            "coverage_of_planted_difference": {k: v / seeds for k, v in covered.items()},
            "significant_share": {k: v / seeds for k, v in significant.items()},
            "note": "campaign-1 has a planted 1.3x lift on convert|participate (power), campaign-2 none (false "
                    "positive rate)"}


# --- throughput -----------------------------------------------------------------------------------

def throughput(customers: int, repeats: int) -> dict[str, Any]:
    ERR.print(f"[bold]throughput[/]: generating one partner with {customers:,} customers")
    frames, _ = generate_partner_frames(SynthConfig(customers=customers, partners=1, seed=3))
    tables = {k: v for k, v in frames["partner-0"].items() if k != "interactions"}
    data = PartnerData("partner-0", **tables)
    batch = catalogue(epsilon=1.0)
    noises = price_batch(batch)
    wire = batch.wire({n: {"mechanism": q.mechanism, "multiplier": q.multiplier} for n, q in noises.items()})
    from fedinsight.tasks.insights.client import compute_batch

    ours, plain = [], []
    with progress() as bar:
        task = bar.add_task("catalogue vs pandas (alternating)", total=repeats)
        for _ in range(repeats):
            start = time.perf_counter()
            compute_batch(data, wire)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            baseline(data)
            plain.append(time.perf_counter() - start)
            bar.advance(task)
    rows = len(data.transactions)
    t_ours, t_plain = statistics.median(ours), statistics.median(plain)
    return {"transaction_rows": rows, "event_rows": len(data.events), "customers": len(data.customers),
            "repeats": repeats, "fedinsight_seconds": round(t_ours, 3), "pandas_seconds": round(t_plain, 3),
            "fedinsight_rows_per_s": round(rows / t_ours), "pandas_rows_per_s": round(rows / t_plain),
            "speed_vs_pandas": round(t_plain / t_ours, 3), "goal_min": 0.5, "met": bool(t_plain / t_ours >= 0.5)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--draws", type=int, default=100, help="noise draws for the coverage check")
    parser.add_argument("--ab-seeds", type=int, default=40, help="synthetic data seeds for the A/B check")
    parser.add_argument("--throughput-customers", type=int, default=825_000, help="~10M transaction rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-insights"))
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--no-heatmap", action="store_true", help="golden-hours without its weekday x hour heatmap "
                        "(the catalogue as it was before the heatmap; compare noise and speed)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["flower", "coverage", "ab", "throughput"])
    args = parser.parse_args()
    if args.quick:
        args.customers, args.draws, args.ab_seeds = 100_000, 10, 5
        args.throughput_customers, args.repeats = 85_000, 2
    global HEATMAP
    HEATMAP = not args.no_heatmap
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    data = ensure_data(args.out, args.customers, args.partners, seed=1)
    if "flower" not in args.skip:
        report["accuracy_flower"] = flower_runs(data, args.partners, args.epsilon, args.out)
    if "coverage" not in args.skip:
        report["coverage_noise"] = noise_coverage(data, args.partners, args.epsilon, args.draws)
    if "ab" not in args.skip:
        report["coverage_ab_planted"] = ab_coverage(args.ab_seeds, 60_000, 3, args.epsilon)
    if "throughput" not in args.skip:
        report["throughput"] = throughput(args.throughput_customers, args.repeats)
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2, default=float)
    (args.out / "insights-benchmark.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

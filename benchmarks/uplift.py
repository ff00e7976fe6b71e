"""Benchmark of the federated DP uplift model and its offer policy on synthetic data with planted effects (JSON).

The synthetic generator's ``offers`` campaign (:mod:`fedinsight.data.synth_uplift`) knows every customer's true
uplift under each offer, its expected order value and the offers' costs. On ``--customers`` customers over
``--partners`` partners (default 100,000 and 10), each partner's campaign audience is read with the task's own
features (:mod:`fedinsight.tasks.uplift.features`) and split 80/20 with a fresh secret key, then, side by side:

- **federated**: the task's own partner code (:mod:`fedinsight.tasks.uplift.simulate`: Opacus DP-SGD with OS
  entropy, equal-weight FedAvg, the plan's noise at ``--epsilon``) -- the released model's Qini on the pooled
  held-out customers without noise (``qini``: the model's quality), and the Qini drawn from the partners'
  noisy evaluation release (``qini_dp_release``: what the coordinator sees);
- **centralized**: the same model, non-private, on the pooled training customers;
- **random**: random scores;
- **policies** on the held-out customers, valued with the *true* uplift and order value: the federated model's,
  the centralized model's, the planted truth's (the best achievable), everyone-gets-each-offer, and nobody.

Goals (issue 16): federated Qini >= 0.9 x centralized (each offer), top 30 % >= 1.5 x the incremental
conversions of random targeting (each offer, true conversions), federated policy value >= 0.9 x the truth's.
Not Flower's runtime (that is `fedinsight simulate uplift`); no consent filter (raw generator frames).

Usage::

    python benchmarks/uplift.py                      # 100,000 customers, 10 partners, epsilon 1
    python benchmarks/uplift.py --customers 20000    # smaller
    python benchmarks/uplift.py --seed 11 -v heads=shared -v heads=separate   # settings side by side, one seed
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from uplift_tuning import parse_items, parse_setting  # the one settings parser (benchmarks/ is on sys.path)

from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.data.synth_uplift import best_offer
from fedinsight.models.qini import bin_counts, curve_from_bins, exact_curve
from fedinsight.models.uplift import UpliftNet, build_model, fit_centralized, predicted_uplift, set_weights
from fedinsight.privacy.holdout import holdout_mask
from fedinsight.tasks.uplift import policy
from fedinsight.tasks.uplift.baselines import concat
from fedinsight.tasks.uplift.features import FEATURES, Audience, audience
from fedinsight.tasks.uplift.options import SCORE_EDGES, UpliftOptions
from fedinsight.tasks.uplift.simulate import federated_weights, released


def qini_of(uplift: np.ndarray, test: Audience, options: UpliftOptions) -> dict[str, Any]:
    out = {}
    for o, name in enumerate(options.offers):
        keep = (test.arm == 0) | (test.arm == o + 1)
        s, t, y = uplift[keep, o], test.arm[keep] == o + 1, test.converted[keep]
        exact = exact_curve(s, t, y)
        binned = curve_from_bins(*bin_counts(s, t, y, np.asarray(SCORE_EDGES)))
        out[name] = {"qini": exact.coefficient, "qini_binned": binned.coefficient,
                     "top_vs_random": exact.targeting_ratio(options.top_share)}
    return out


def policy_value(choice: np.ndarray, truth: pd.DataFrame, options: UpliftOptions) -> float:
    """Total true incremental value (money) of sending each customer its chosen offer (0 = none)."""
    value = np.zeros(len(truth))
    for o, name in enumerate(options.offers):
        pick = choice == o + 1
        value[pick] = (truth[f"uplift_{name}"].to_numpy()[pick] * truth["expected_order_value"].to_numpy()[pick]
                       - options.costs[name])
    return float(value.sum())


def side_by_side(block: dict[str, Any]) -> dict[str, Any]:
    """The goal figures of one run, for comparing settings on one line."""
    fed = block["qini"]["federated"]
    return {"policy_ratio": block["policy_ratio_federated_vs_truth"],
            "policy_ratio_centralized": block["policy_ratio_centralized_vs_truth"],
            "qini_ratio": block["qini_ratio_federated_vs_centralized"],
            "top_vs_random": {o: f["top_vs_random"] for o, f in fed.items()}, "goals": block["goals"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=UpliftOptions.rounds)  # the task's default
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--option", "-o", action="append", default=[], metavar="NAME=VALUE",
                        help="Any other uplift option (e.g. -o knots=none -o order_value_weight=2): compare settings")
    parser.add_argument("--variant", "-v", action="append", default=[], metavar="NAME=VALUE,...",
                        help="Also run these settings (on top of -o) on the same federation, split and centralized "
                             "reference, side by side (e.g. -v heads=separate -v max_grad_norm=3)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    overrides = parse_items(args.option)
    options = UpliftOptions(epsilon=args.epsilon, rounds=args.rounds, offer_costs="discount=4,gift=3", **overrides)
    variants = {}
    for text in args.variant:
        extra = parse_setting(text)
        variants[text] = (UpliftOptions(epsilon=args.epsilon, rounds=args.rounds, offer_costs="discount=4,gift=3",
                                        **{**overrides, **extra}), extra)
    started = time.perf_counter()
    with console.status("generating synthetic partners with the planted offers campaign"):
        frames, truth = generate_partner_frames(SynthConfig(customers=args.customers, partners=args.partners,
                                                            seed=args.seed, offers=True))
    trains, tests, everyone = [], [], []
    with console.status("reading each partner's campaign audience"):
        for tables in frames.values():
            who = audience(tables["events"], tables["transactions"], options.campaign, options.arms)
            held = holdout_mask(who.ids, 0.2, os.urandom(32))
            trains.append(who.take(~held))
            tests.append(who.take(held))
            everyone.append(who)
    train, test = concat(trains), concat(tests)
    generated = time.perf_counter() - started
    rng = np.random.default_rng(0)
    truth_rows = truth["customer_truth"].set_index("customer_id").loc[np.asarray(test.ids)]
    planted = best_offer({o: truth_rows[f"uplift_{o}"].to_numpy() for o in options.offers},
                         truth_rows["expected_order_value"].to_numpy(), options.costs)
    planted_choice = np.asarray([0 if c == "" else options.offers.index(c) + 1 for c in planted])
    references: dict[tuple[Any, ...], UpliftNet] = {}

    def centralized_of(opts: UpliftOptions) -> UpliftNet:
        """The non-private reference of the variant's model shape (trained once per shape)."""
        shape = (opts.hidden, opts.knot_values, opts.heads, opts.basis)
        if shape not in references:
            with console.status("centralized non-private model"):
                references[shape] = fit_centralized(train.x, train.arm, train.converted, len(opts.arms),
                                                    hidden=opts.hidden, knots=opts.knot_values, heads=opts.heads,
                                                    basis=opts.basis)
        return references[shape]

    def run(opts: UpliftOptions, label: str) -> dict[str, Any]:
        """One federated DP run of ``opts`` on the shared split, next to its centralized reference."""
        with console.status(f"{label}: federated DP-SGD, {args.partners} partners x {opts.rounds} rounds"):
            t0 = time.perf_counter()
            weights = federated_weights(trains, opts)
            fed_seconds = time.perf_counter() - t0
            fed = set_weights(build_model(len(FEATURES), len(opts.arms), opts.hidden, opts.seed,
                                          opts.knot_values, opts.heads, opts.basis), weights)
            dp = released(weights, tests, everyone, opts)
        central = centralized_of(opts)
        costs = np.asarray([opts.costs[o] for o in opts.offers])
        value_cap = opts.expected_order_value(test)

        def choice_of(model: UpliftNet) -> np.ndarray:
            return policy.choose(predicted_uplift(model, test.x), value_cap, costs)

        values = {"federated": policy_value(choice_of(fed), truth_rows, opts),
                  "centralized": policy_value(choice_of(central), truth_rows, opts),
                  "planted_truth": policy_value(planted_choice, truth_rows, opts),
                  **{f"everyone_{o}": policy_value(np.full(len(test), i + 1), truth_rows, opts)
                     for i, o in enumerate(opts.offers)}, "nobody": 0.0}
        federated, centralized = qini_of(predicted_uplift(fed, test.x), test, opts), \
            qini_of(predicted_uplift(central, test.x), test, opts)
        for name in opts.offers:
            federated[name]["qini_dp_release"] = dp["metrics"][name]["qini"]
            federated[name]["top_vs_random_dp_release"] = dp["metrics"][name]["top_vs_random"]
        ratio = {o: federated[o]["qini"] / centralized[o]["qini"] if centralized[o]["qini"] > 0 else None
                 for o in opts.offers}
        policy_ratio = values["federated"] / values["planted_truth"] if values["planted_truth"] > 0 else None
        return {
            "qini": {"federated": federated, "centralized": centralized},
            "qini_ratio_federated_vs_centralized": ratio,
            "policy_value_on_held_out": values, "policy_ratio_federated_vs_truth": policy_ratio,
            "policy_ratio_centralized_vs_truth": values["centralized"] / values["planted_truth"]
            if values["planted_truth"] > 0 else None,
            "policy_counts_dp_release": dp["policy"]["cells"],
            "economics_dp_release": {o: {k: f[k] for k in ("incremental_conversions", "cpa", "roi")}
                                     for o, f in dp["economics"].items()},
            "noise": {"dpsgd_multiplier": opts.plan().noise_multiplier,
                      "release_multiplier": opts.plan().gaussian_noise_multiplier},
            "goals": {"qini_ge_0.9_centralized": all(r is not None and r >= 0.9 for r in ratio.values()),
                      "top30_ge_1.5_random": all(federated[o]["top_vs_random"] >= 1.5 for o in opts.offers),
                      "policy_ge_0.9_truth": policy_ratio is not None and policy_ratio >= 0.9},
            "seconds_federated_training": round(fed_seconds, 1),
        }

    main_run = run(options, "options")
    main_run["qini"]["random"] = qini_of(rng.random((len(test), len(options.offers))), test, options)
    audience_truth = truth["customer_truth"].set_index("customer_id").loc[
        np.concatenate([np.asarray(a.ids) for a in everyone])]
    arms_all = np.concatenate([a.arm for a in everyone])
    planted_extra = {o: float(audience_truth[f"uplift_{o}"].to_numpy()[arms_all == i + 1].sum())
                     for i, o in enumerate(options.offers)}
    result = {
        "benchmark": "uplift", "customers": args.customers, "partners": args.partners, "epsilon": args.epsilon,
        "rounds": options.rounds, "options": overrides, "knots": list(options.knot_values),
        "order_value": {"prior": options.prior_order_value, "weight": options.order_value_weight},
        "seed": args.seed, "audience": {"train": len(train), "held_out": len(test)},
        **{k: v for k, v in main_run.items() if k != "seconds_federated_training"},
        "economics_planted_incremental_conversions": planted_extra,
    }
    if variants:
        # the same split, truth and centralized reference (per model shape); each variant its own DP draw
        result["variants"] = {label: {"options": extra, **run(opts, label)}
                              for label, (opts, extra) in variants.items()}
        result["side_by_side"] = {label: side_by_side(block) for label, block in
                                  [("options", main_run), *((k, v) for k, v in result["variants"].items())]}
    result["seconds"] = {"generate_and_read": round(generated, 1),
                         "federated_training": main_run["seconds_federated_training"],
                         "total": round(time.perf_counter() - started, 1)}
    print(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

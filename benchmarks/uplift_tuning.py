"""Choose the uplift task's DP-SGD settings on *validation* customers only (JSON, one line per setting).

Why a separate script: ``benchmarks/uplift.py`` reports on held-out test customers, which must never choose a
setting. Here one synthetic federation (``--seed``, default 1: the seed reserved for choosing) is generated once;
each partner's campaign audience is split with fresh secret keys into test customers (20 %, never read), and, of
the rest, validation customers (20 %) and training customers. The centralized non-private model of the same shape
is trained once on the training customers; then every ``--setting`` (comma-separated uplift options, e.g.
``"lr=5,sample_rate=0.2"``) runs the task's own federated DP-SGD code (:mod:`fedinsight.tasks.uplift.simulate`)
``--repeats`` times, each with fresh DP noise, and reports on the validation customers, side by side with the
centralized model: the offer policy's true incremental value as a share of the planted-truth policy's, each
offer's exact Qini coefficient and its ratio to the centralized one, top 30 % vs random, and the correlation of
predicted with true uplift.

Usage::

    python benchmarks/uplift_tuning.py -s "" -s "lr=10" -s "sample_rate=0.5,rounds=40"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
from rich.console import Console

from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.data.synth_uplift import best_offer
from fedinsight.models.qini import exact_curve
from fedinsight.models.uplift import build_model, fit_centralized, moving_average, predicted_uplift, set_weights
from fedinsight.privacy.holdout import holdout_mask
from fedinsight.tasks.uplift import policy
from fedinsight.tasks.uplift.baselines import concat
from fedinsight.tasks.uplift.features import FEATURES, Audience, audience
from fedinsight.tasks.uplift.options import UpliftOptions
from fedinsight.tasks.uplift.simulate import global_models

COSTS = "discount=4,gift=3"


def parse_setting(text: str) -> dict[str, Any]:
    """``"name=value,name=value"`` -> uplift options (:func:`parse_items`)."""
    return parse_items(text.split(","))


def parse_items(items: list[str]) -> dict[str, Any]:
    """``["name=value", ...]`` -> uplift options, typed like their defaults (unknown names stop the script); the one
    parser of the uplift benchmarks' settings."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in items)):
        name, _, value = item.partition("=")
        name = name.replace("-", "_")
        if name not in UpliftOptions.__dataclass_fields__:
            raise SystemExit(f"unknown uplift option {name!r}")
        default = getattr(UpliftOptions(), name)  # None: a float whose default is derived (max_grad_norm, delta)
        out[name] = (float if default is None else type(default))(value)
    return out


def evaluate(uplift: np.ndarray, val: Audience, truth: Any, options: UpliftOptions) -> dict[str, Any]:
    """Policy value share of the planted truth's, Qini, top 30 % vs random and uplift correlation per offer."""
    costs = np.asarray([options.costs[o] for o in options.offers])
    choice = policy.choose(uplift, options.expected_order_value(val), costs)
    order_value = truth["expected_order_value"].to_numpy()
    true_uplift = {o: truth[f"uplift_{o}"].to_numpy() for o in options.offers}

    def value(pick: np.ndarray) -> float:
        return float(sum((true_uplift[o] * order_value - options.costs[o])[pick == i + 1].sum()
                         for i, o in enumerate(options.offers)))

    planted = best_offer(true_uplift, order_value, options.costs)
    planted_choice = np.asarray([0 if c == "" else options.offers.index(c) + 1 for c in planted])
    best = value(planted_choice)
    # where the policy loses value: the model's uplift x the planted order value, and the planted uplift x the
    # policy's own order-value estimate (diagnostics, valued with the truth like the policy itself)
    with_true_order = policy.choose(uplift, order_value, costs)
    with_true_uplift = policy.choose(np.column_stack([true_uplift[o] for o in options.offers]),
                                     options.expected_order_value(val), costs)
    out: dict[str, Any] = {"policy_vs_truth": round(value(choice) / best, 4),
                           "policy_true_order_value": round(value(with_true_order) / best, 4),
                           "policy_true_uplift": round(value(with_true_uplift) / best, 4)}
    for o, name in enumerate(options.offers):
        keep = (val.arm == 0) | (val.arm == o + 1)
        curve = exact_curve(uplift[keep, o], val.arm[keep] == o + 1, val.converted[keep])
        out[name] = {"qini": round(curve.coefficient, 5), "top30_vs_random": round(curve.targeting_ratio(0.3), 3),
                     "uplift_corr": round(float(np.corrcoef(uplift[:, o], true_uplift[name])[0, 1]), 3),
                     "mean_pred_over_true": round(float(uplift[:, o].mean() / true_uplift[name].mean()), 3)}
    return out


def averages(models: list[dict[str, np.ndarray]], rules: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """The released model under each post-processing rule of the same run's global models: ``ema=D`` (moving
    average with decay D, the task's rule), ``tail=S`` (uniform average of the last share S of rounds), ``last``."""
    out = {}
    for rule in rules:
        name, _, value = rule.partition("=")
        if name == "ema":
            avg = None
            for w in models:
                avg = moving_average(avg, w, float(value))
        elif name == "tail":
            kept = models[-max(1, round(float(value) * len(models))):]
            avg = {k: np.mean([w[k] for w in kept], axis=0) for k in models[0]}
        elif name == "last":
            avg = models[-1]
        else:
            raise SystemExit(f"unknown averaging rule {rule!r} (ema=D, tail=SHARE or last)")
        out[rule] = {k: np.asarray(v, dtype=np.float32) for k, v in avg.items()}  # type: ignore[union-attr]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--setting", "-s", action="append", default=[], metavar="NAME=VALUE,...")
    parser.add_argument("--average", "-a", action="append", default=[], metavar="RULE",
                        help="Also report these release rules of the same run (ema=D, tail=SHARE, last): "
                             "paired comparisons on one DP draw")
    args = parser.parse_args(argv)
    if args.seed != 1:
        print("warning: seeds 2-5 are for checking, not choosing", file=sys.stderr)
    console = Console(stderr=True)
    base = UpliftOptions(offer_costs=COSTS)
    with console.status("generating the synthetic federation"):
        frames, truth = generate_partner_frames(SynthConfig(customers=args.customers, partners=args.partners,
                                                            seed=args.seed, offers=True))
    trains, vals = [], []
    for tables in frames.values():
        who = audience(tables["events"], tables["transactions"], base.campaign, base.arms)
        test = holdout_mask(who.ids, 0.2, os.urandom(32))  # never read below
        rest = who.take(~test)
        val = holdout_mask(rest.ids, 0.2, os.urandom(32))
        trains.append(rest.take(~val))
        vals.append(rest.take(val))
    train, val = concat(trains), concat(vals)
    val_truth = truth["customer_truth"].set_index("customer_id").loc[np.asarray(val.ids)]
    centralized: dict[tuple[Any, ...], Any] = {}
    for text in args.setting or [""]:
        options = UpliftOptions(offer_costs=COSTS, **parse_setting(text))
        shape = (options.hidden, options.knot_values, options.heads, options.basis)
        if shape not in centralized:
            model = fit_centralized(train.x, train.arm, train.converted, len(options.arms), hidden=options.hidden,
                                    knots=options.knot_values, heads=options.heads,
                                    basis=options.basis)
            centralized[shape] = evaluate(predicted_uplift(model, val.x), val, val_truth, options)
        ref = centralized[shape]
        for repeat in range(args.repeats):
            started = time.perf_counter()
            with console.status(f"{text or 'defaults'}: run {repeat + 1}"):
                models = list(global_models(trains, options))
            seconds = round(time.perf_counter() - started, 1)
            plan = options.plan()
            rules = [f"ema={options.ema}"] + [r for r in args.average if r != f"ema={options.ema}"]
            for rule, weights in averages(models, rules).items():
                model = set_weights(build_model(len(FEATURES), len(options.arms), options.hidden, options.seed,
                                                options.knot_values, options.heads, options.basis), weights)
                fed = evaluate(predicted_uplift(model, val.x), val, val_truth, options)
                print(json.dumps({"setting": text or "defaults", "release": rule, "repeat": repeat,
                                  "federated": fed, "centralized": ref,
                                  "qini_ratio": {o: round(fed[o]["qini"] / ref[o]["qini"], 3) for o in options.offers},
                                  "noise_multiplier": round(plan.noise_multiplier, 3),
                                  "steps": plan.total_steps, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

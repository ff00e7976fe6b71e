"""Benchmark: how far the propensity task's DP evaluation is from the exact evaluation of the same model.

Takes a finished ``simulate propensity`` run folder of a built-in dataset (its ``model.pt`` and its simulated
partners under ``partners/``), rebuilds every partner's held-out customers exactly as the partner does (its own
vault key and share), and releases each partner's evaluation ``--draws`` times with the job's noise
(:mod:`fedinsight.tasks.propensity.evaluation`, OpenDP), then reads them as the coordinator does. Prints one
JSON document: the exact AUC, the exact AUC of the binned histograms (what binning alone costs), and the
bias and mean absolute error of the noisy AUC, log loss and LTV MAE.

    python benchmarks/propensity.py --quick --keep runs/bench      # a CDNOW run (10 partners, epsilon 1)
    python benchmarks/propensity_dp_eval.py runs/bench/eps1.0-k10-s0 --draws 200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fedinsight.models.metrics import assign_tiers, exact_metrics, pooled_metrics
from fedinsight.models.propensity import ModelBundle, predict
from fedinsight.partner.view import PartnerView
from fedinsight.privacy.holdout import holdout_key
from fedinsight.tasks.propensity import evaluation
from fedinsight.tasks.propensity.baselines import pooled_split
from fedinsight.tasks.propensity.features import FeatureCaps, LabelWindow, spend_from_unit, unit_features
from fedinsight.tasks.propensity.options import HOLDOUT_KEY, PropensityOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    summary = json.loads((args.run / "summary.json").read_text())
    options = PropensityOptions.from_run_config({k.replace("_", "-"): v for k, v in summary["settings"].items()})
    bundle = ModelBundle.load(args.run / "model.pt")
    window, caps = LabelWindow.from_config(bundle.config), FeatureCaps.from_config(bundle.config)
    multiplier = options.eval_noise_multiplier()
    partners = []
    for folder in sorted(p for p in (args.run / "partners").iterdir() if p.is_dir()):
        view = PartnerView(folder, "training")
        split = pooled_split({folder.name: view.tables()}, window, {folder.name: holdout_key(view.vault, HOLDOUT_KEY)})
        table = split.table[split.evaluated]
        if table.empty:
            continue  # a partner that suppresses its evaluation
        p, z_hat = predict(bundle.model(), bundle.scaler.transform(unit_features(table, window, caps)))
        ltv = p * spend_from_unit(np.clip(bundle.target.inverse(z_hat), 0, 1), caps)
        spend = table["spend"].to_numpy(float)
        tiers = {"true_tiers": assign_tiers(spend, tuple(bundle.config["tier-true"])),
                 "predicted_tiers": assign_tiers(ltv, bundle.tier_thresholds)}
        partners.append((table["buys_again"].to_numpy(float), p, spend, ltv, tiers))
    y, p, spend, ltv = (np.concatenate([part[i] for part in partners]) for i in range(4))
    exact = exact_metrics(y, p, spend=spend, ltv=ltv)
    values = [evaluation.exact_release(yy, pp, caps=options.eval_caps, spend=ss, ltv=ll, **tt)
              for yy, pp, ss, ll, tt in partners]
    binned = pooled_metrics(evaluation.summary_of([{**v} for v in values], tiers=True))
    errors: dict[str, list[float]] = {"auc": [], "log_loss": [], "mae": []}
    spreads = []
    for _ in range(args.draws):
        releases = [evaluation.noisy_release(v, options.eval_caps, multiplier) for v in values]
        metrics, _ = evaluation.read(releases, tiers=True, noise_multiplier=multiplier)
        for key in errors:
            errors[key].append(metrics[key] - exact[key])
        spreads.append(metrics.get("auc_noise_sd", float("nan")))
    print(json.dumps({
        "run": str(args.run), "partners_evaluated": len(partners), "held_out": int(len(y)),
        "epsilon": options.epsilon, "eval_share": options.eval_share, "eval_noise_multiplier": multiplier,
        "auc_exact": exact["auc"], "auc_binned_exact": evaluation._auc(np.sum([v["hist_pos"] for v in values], 0),
                                                                       np.sum([v["hist_neg"] for v in values], 0)),
        "log_loss_exact": exact["log_loss"], "log_loss_clipped_exact": binned["log_loss"],
        "mae_exact": exact["mae"], "mae_clipped_exact": binned["mae"],  # what clipping alone costs
        "draws": args.draws,
        "noisy_minus_exact": {k: {"bias": float(np.mean(v)), "mean_abs": float(np.mean(np.abs(v))),
                                  "p95_abs": float(np.quantile(np.abs(v), 0.95))} for k, v in errors.items()},
        "auc_noise_sd_estimated": float(np.nanmean(spreads)),
    }, indent=2))


if __name__ == "__main__":
    main()

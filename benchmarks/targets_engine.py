"""A target list's scores and in-scope customers on one partner: the pandas path vs the partner's engine.

    python benchmarks/targets_engine.py --customers 50000

Writes one synthetic partner (``data synth``'s generator, CSV, ``partner init``'s policy) and a fixed (untrained)
propensity model whose window lies in the data, then runs, each in its own process so each peak RSS is its own:
``pandas`` (the path ``partner export targets`` used before: ``PartnerSide.data()`` for the marketing scope and
``score_customers`` on the training view's transactions) and ``engine`` (``check_data``: the engine's type check,
one pass; ``view_tokens``: one distinct-id scan; ``score_scanned``: the features' scan). Prints one JSON object:
seconds, peak RSS, customers in scope and scored, whether scope, scored customers, order and tiers are exactly
equal, and the largest absolute difference of the propensities (the engine sums money exactly, pandas adds floats
row by row: the synthetic amounts are not whole quarters, so the last bit of a money feature may differ).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
from engine_paths import peak_mb, row_counts, run_child, write_synth_partner


def measure(kind: str, folder: Path, model: Path, out: Path) -> dict[str, float]:
    from fedinsight.models.propensity import ModelBundle
    from fedinsight.partner.side import open_partner
    from fedinsight.partner.targets import view_tokens
    from fedinsight.tasks.propensity.scoring import score_customers, score_scanned

    bundle = ModelBundle.load(model)
    began = time.perf_counter()
    training, marketing = open_partner(folder, "training"), open_partner(folder, "marketing")
    if kind == "pandas":
        customers = marketing.data().customers
        scope = set(customers["customer_id"].astype(str))  # the synthetic partner has a customers table
        scores = score_customers(bundle, training.data().transactions)
    else:
        training.check_data()  # the type check build_targets runs first (the pandas load validates as it reads)
        scope = view_tokens(marketing)
        scores = score_scanned(bundle, training)
    seconds = time.perf_counter() - began
    scores = scores[scores["customer_id"].isin(scope)]
    scores = scores.sort_values(["propensity", "customer_id"], ascending=[False, True], kind="stable")
    scores.assign(ltv_tier=scores["ltv_tier"].astype(str)).to_parquet(out, index=False)
    pd.Series(sorted(scope), name="customer_id").to_frame().to_parquet(out.with_suffix(".scope.parquet"))
    return {"seconds": round(seconds, 2), "in_scope": len(scope), "scored_in_scope": len(scores),
            "peak_rss_mb": peak_mb()}


def child(kind: str, folder: Path, model: Path, out: Path) -> dict[str, float]:
    return run_child(__file__, kind, "--folder", str(folder), "--model", str(model), "--out", str(out))


def write_partner(folder: Path, model: Path, customers: int) -> dict[str, int]:
    """The partner's CSV files and policy, and a model whose calibration window ends two thirds into the data."""
    from fedinsight.models.propensity import ModelBundle, SharedScaler, TargetScaler, build_model, get_weights
    from fedinsight.tasks.propensity.features import FEATURES, FeatureCaps, LabelWindow

    tables = write_synth_partner(folder, customers)
    when = pd.to_datetime(tables["transactions"]["timestamp"])
    cutoff = (when.min() + (when.max() - when.min()) * 2 / 3).normalize()
    window = LabelWindow(cutoff - pd.Timedelta(days=365), cutoff, cutoff + pd.Timedelta(days=180))
    n = len(FEATURES)
    ModelBundle(kind="mlp", features=FEATURES, weights=get_weights(build_model(n, "mlp", 3)),
                scaler=SharedScaler((0.0,) * n, (1.0,) * n), target=TargetScaler(0.35, FeatureCaps().log_unit),
                tier_thresholds=(5.0, 50.0), config={**window.to_config(), **FeatureCaps().to_config()}).save(model)
    return row_counts(tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--measure", choices=["pandas", "engine"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.folder, args.model, args.out)))
        return
    from rich.console import Console

    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder, model = Path(tmp) / "shop", Path(tmp) / "model.pt"
        with console.status(f"writing a partner of {args.customers:,} customers"):
            rows = write_partner(folder, model, args.customers)
        results: dict[str, object] = {"customers": args.customers, "rows": rows}
        for kind in ("pandas", "engine"):
            with console.status(f"measuring the {kind} path"):
                results[kind] = child(kind, folder, model, Path(tmp) / f"{kind}.parquet")
        a, b = (pd.read_parquet(Path(tmp) / f"{k}.parquet") for k in ("pandas", "engine"))
        scope_a, scope_b = (pd.read_parquet(Path(tmp) / f"{k}.scope.parquet") for k in ("pandas", "engine"))
        results["scope_equal"] = scope_a.equals(scope_b)
        results["scored_ids_in_order_equal"] = a["customer_id"].tolist() == b["customer_id"].tolist()
        results["tiers_equal"] = a["ltv_tier"].tolist() == b["ltv_tier"].tolist()
        same = len(a) == len(b) and (a["customer_id"].to_numpy() == b["customer_id"].to_numpy()).all()
        results["propensity_max_abs_difference"] = (
            float((a["propensity"].to_numpy() - b["propensity"].to_numpy()).__abs__().max(initial=0.0))
            if same else None)
        pandas, engine = results["pandas"], results["engine"]
        results["engine_speed_vs_pandas"] = round(pandas["seconds"] / engine["seconds"], 2)  # type: ignore[index]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Serving throughput on a partner: every customer at once (``fedinsight recommend --all``) vs one at a time.

Run: .venv/bin/python benchmarks/recommend_serving.py          (about 6 min here; prints JSON)
     .venv/bin/python benchmarks/recommend_serving.py --quick  (MovieLens only, 2 rounds)

Partners:

* **MovieLens-100K, 10 partners** (IID, ~94 customers each), trained by one ``fedinsight simulate recommend``
  run with the default (private) settings; every partner then serves its own customers.
* **A synthetic larger partner**: 100,000 customers x 5,000 items (``write_synthetic``, one partner, its
  ``protection.toml`` from ``partner init``); about 90,000 consent to recommendations, ~20 % of them have fewer
  than two interactions (cold start). Its model is one epoch of plain BPR-MF on the partner alone
  (``fit_bpr``): serving speed does not depend on how good the model is, and a federated private run on
  636,000 interactions would only make the benchmark slower.

Paths timed, side by side, in customers per second:

* ``batch``: ``PartnerServer.recommend_all`` -- one matrix product and one ``argpartition`` per block of 2,048
  customers -- with (``end_to_end``: open the data view, the vault's state and the model, resolve the partner's
  own ids, write the Parquet file) and without the loading (``serving_only``);
* ``one_at_a_time``: the public one-customer call ``recommend_items`` for a sample of customers -- what serving
  every customer meant before (it opens the model, the state and the view each time, as each CLI call does);
* ``one_at_a_time_loaded``: ``PartnerServer.recommend`` per customer with everything loaded once, to separate
  what vectorising buys from what loading once buys;
* ``cli``: one ``fedinsight recommend --customer`` process per customer against one ``--all`` process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _rate(customers: int, seconds: float) -> float:
    return round(customers / seconds, 1) if seconds > 0 else float("inf")


def _cli(*args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fedinsight.cli", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"fedinsight {' '.join(args[:2])} failed: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - start


def serve_partner(model: Path, folder: Path, sample: int, k: int, work: Path) -> dict[str, Any]:
    """Every timed path on one partner's folder."""
    from fedinsight.partner.side import open_partner
    from fedinsight.tasks.recommend.serving import PartnerServer, recommend_items, write_recommendations

    start = time.perf_counter()
    server = PartnerServer(model, open_partner(folder, "recommendation"))
    loaded = time.perf_counter()
    server.own_ids()  # the partner's own ids for its tokens: its view re-reads its raw files once
    resolved = time.perf_counter()
    frame = server.recommend_all(k)
    served = time.perf_counter()
    write_recommendations(frame, work / f"{folder.name}.parquet")
    end = time.perf_counter()
    customers = int(frame["customer_id"].nunique())
    own = frame["customer_id"].drop_duplicates()
    picks = own.iloc[np.linspace(0, len(own) - 1, min(sample, len(own))).astype(int)].tolist()
    t0 = time.perf_counter()
    for customer in picks:
        recommend_items(model, open_partner(folder, "recommendation"), customer, k=k)
    t1 = time.perf_counter()
    for customer in picks:
        server.recommend(customer, k)
    t2 = time.perf_counter()
    sources = frame.drop_duplicates("customer_id")["source"].astype(str).value_counts()
    return {"customers": customers, "personal": int(sources.get("personal", 0)),
            "popular_in_segment": int(sources.get("popular-in-segment", 0)),
            "load_s": loaded - start, "own_ids_s": resolved - loaded, "serve_s": served - resolved,
            "write_s": end - served, "end_to_end_s": end - start,
            "one_at_a_time_s": t1 - t0, "one_at_a_time_loaded_s": t2 - t1, "sampled": len(picks),
            "picks": picks[:2]}


def summarise(parts: list[dict[str, Any]]) -> dict[str, Any]:
    customers = sum(p["customers"] for p in parts)
    sampled = sum(p["sampled"] for p in parts)
    serve = sum(p["serve_s"] for p in parts)
    end = sum(p["end_to_end_s"] for p in parts)
    one = sum(p["one_at_a_time_s"] for p in parts)
    loaded = sum(p["one_at_a_time_loaded_s"] for p in parts)
    rates = {"batch_serving_only": _rate(customers, serve), "batch_end_to_end": _rate(customers, end),
             "one_at_a_time": _rate(sampled, one), "one_at_a_time_loaded_once": _rate(sampled, loaded)}
    return {"customers": customers, "personal": sum(p["personal"] for p in parts),
            "popular_in_segment": sum(p["popular_in_segment"] for p in parts),
            "customers_per_s": rates,
            "ratios": {"batch_end_to_end / one_at_a_time": round(rates["batch_end_to_end"] / rates["one_at_a_time"], 1),
                       "batch_serving_only / one_at_a_time_loaded_once":
                           round(rates["batch_serving_only"] / rates["one_at_a_time_loaded_once"], 1)},
            "seconds": {"load": round(sum(p["load_s"] for p in parts), 2),
                        "own_ids": round(sum(p["own_ids_s"] for p in parts), 2), "serve": round(serve, 2),
                        "write": round(sum(p["write_s"] for p in parts), 2), "end_to_end": round(end, 2)},
            "goal_batch_end_to_end >= 1000 customers/s": rates["batch_end_to_end"] >= 1000}


def cli_side_by_side(model: Path, folder: Path, customers: list[str], total: int, work: Path) -> dict[str, Any]:
    one = [_cli("recommend", "--model", str(model), "--partner-data", str(folder), "--customer", c, "--json")
           for c in customers]
    batch = _cli("recommend", "--model", str(model), "--partner-data", str(folder), "--all", "--out",
                 str(work / "cli.parquet"), "--json")
    per_customer = sum(one) / len(one)
    return {"one_customer_process_s": round(per_customer, 2), "all_customers_process_s": round(batch, 2),
            "customers": total, "customers_per_s": {"cli_one_at_a_time": _rate(1, per_customer),
                                                    "cli_all": _rate(total, batch)},
            "ratio cli_all / cli_one_at_a_time": round(per_customer * total / batch, 1)}


def movielens(work: Path, rounds: int, sample: int, k: int) -> dict[str, Any]:
    out = work / "ml"
    train_s = _cli("simulate", "recommend", "--dataset", "movielens-100k", "--partners", "10", "--rounds", str(rounds),
                   "--no-local-only", "--baseline-epochs", "1", "--out", str(out), "--json")
    folders = sorted(f for f in (out / "partners").iterdir() if f.is_dir() and not f.name.startswith("."))
    parts = [serve_partner(out / "model", f, sample, k, work) for f in folders]
    settings = json.loads((out / "summary.json").read_text())["settings"]
    return {"partners": len(parts), "training": {"rounds": rounds, "epsilon": settings["epsilon"], "seconds":
                                                 round(train_s, 1)},
            **summarise(parts), "cli": cli_side_by_side(out / "model", folders[0], parts[0]["picks"],
                                                        parts[0]["customers"], work)}


def large(work: Path, customers: int, items: int, sample: int, k: int) -> dict[str, Any]:
    from fedinsight.data.synth import SynthConfig, write_synthetic
    from fedinsight.models.ranking import Catalogue, leave_latest_out
    from fedinsight.models.recommender import BPRConfig, fit_bpr
    from fedinsight.partner.policy_init import init_partner
    from fedinsight.partner.side import open_partner
    from fedinsight.tasks.recommend.state import CustomerState, customer_state_name, save_customer_state

    data = work / "large"
    write_synthetic(SynthConfig(customers=customers, partners=1, items=items, campaigns=1), data)
    folder = next(p for p in sorted(data.iterdir()) if p.is_dir() and p.name != "ground_truth")
    init_partner(folder)
    partner = open_partner(folder, "recommendation")
    view = partner.data()
    catalogue = Catalogue.from_items(view.items)  # type: ignore[arg-type]
    split = leave_latest_out(view.interactions, catalogue)  # type: ignore[arg-type]
    start = time.perf_counter()
    trainer, table = fit_bpr(split, catalogue.num_items, BPRConfig(dim=32), 1, seed=0)
    train_s = time.perf_counter() - start
    save_customer_state(partner.vault, customer_state_name("bench-large"),
                        CustomerState("bench-large", split.customer_ids, trainer.customer_embeddings))  # type: ignore[arg-type]
    model = work / "large-model"
    model.mkdir()
    np.savez(model / "items.npz", item_ids=np.asarray(catalogue.item_ids, dtype=str),
             attributes=np.asarray(catalogue.attribute_strings(), dtype=str), embeddings=table.embeddings,
             bias=table.bias)
    (model / "model.json").write_text(json.dumps({"kind": "bpr-mf", "job_id": "bench-large", "dim": 32,
                                                  "attribute": catalogue.attribute, "explore": 0.2, "k": k}))
    part = serve_partner(model, folder, sample, k, work)
    return {"customers_generated": customers, "items": catalogue.num_items, "trained_customers": split.num_customers,
            "training": {"model": "1 epoch plain BPR-MF on the partner alone", "seconds": round(train_s, 1)},
            **summarise([part]), "cli": cli_side_by_side(model, folder, part["picks"], part["customers"], work)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="MovieLens only, 2 rounds")
    parser.add_argument("--rounds", type=int, default=10, help="federated rounds of the MovieLens training run")
    parser.add_argument("--sample", type=int, default=20, help="customers served one at a time per MovieLens partner")
    parser.add_argument("--sample-large", type=int, default=5, help="customers served one at a time on the large "
                        "partner (each call there reopens a 100,000-customer view: ~10 s)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--customers", type=int, default=100_000, help="customers of the synthetic large partner")
    parser.add_argument("--items", type=int, default=5_000, help="items of the synthetic large partner")
    parser.add_argument("--out", type=Path, default=None, help="keep the work folder here (default: a temp folder)")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="fedinsight-serving-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result: dict[str, Any] = {"k": args.k, "batch_customers": 2048}
        result["movielens_100k"] = movielens(work, 2 if args.quick else args.rounds, args.sample, args.k)
        if not args.quick:
            result["synthetic_large"] = large(work, args.customers, args.items, args.sample_large, args.k)
        print(json.dumps(result, indent=2))
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The customer side's row-sparse update against the dense one it replaced (issue 18): time per BPR step on one
partner, side by side in one run, and how far apart the two tables end.

Run (seconds to a minute; one partner of the MovieLens-calibrated synthetic data, 2,000 items):

    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/recommend_step.py --customers 1000,10000

Before, every step ran Adam over every customer's embedding, so a step grew with the partner (O(customers x dim));
now it touches only the batch's customers (``fedinsight.models.recommender._RowAdam``). Per size and mode, with the
same seed: one non-private BPR epoch (32-customer steps, item and customer side: what a partner's alone MF, its
personalisation and the blend choice's fits run), one customer-only epoch (fitting embeddings to a received item
table) and one full-batch DP step (the private federated round: every customer is in the batch, so no gain is
expected there). Times are CPU seconds of this process (torch runs single-threaded here), so other jobs on a
shared machine do not move them as much as wall time (``bpr_epoch_wall_s`` is given too). ``max_abs_diff``
compares the two modes' tables after the epoch (float rounding, not a change of method); ``hr@10`` scores both
after ``--epochs`` epochs on each customer's latest item against 99 unseen ones.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np


def partner_split(customers: int, items: int, seed: int) -> tuple[Any, Any]:
    """One partner's leave-latest-out split of the synthetic interactions (no files written)."""
    from fedinsight.data.synth_interactions import InteractionsConfig, generate
    from fedinsight.models.ranking import Catalogue, leave_latest_out

    frames, _ = generate(InteractionsConfig(customers=customers, items=items, partners=1, seed=seed))
    frame = frames["partner-00"]
    catalogue = Catalogue.from_ids(list(frame["items"]["item_id"]))
    return leave_latest_out(frame["interactions"], catalogue), catalogue


def measure(split: Any, catalogue: Any, dense: bool, epochs: int, seed: int) -> dict[str, Any]:
    from fedinsight.models.ranking import evaluate_ranking
    from fedinsight.models.recommender import BPRConfig, DPConfig, ItemParams, LocalTrainer

    cfg = BPRConfig()
    n_items = catalogue.num_items
    trainer = LocalTrainer(split, n_items, cfg, seed=seed, dense_customers=dense)
    items = ItemParams.init(n_items, cfg.dim, seed, cfg.init_scale)
    out: dict[str, Any] = {}
    start, wall = time.process_time(), time.perf_counter()
    items, stats = trainer.train(items, 1)
    out["bpr_epoch_s"] = round(time.process_time() - start, 3)
    out["bpr_epoch_wall_s"] = round(time.perf_counter() - wall, 3)
    out["bpr_step_ms"] = round(1000 * out["bpr_epoch_s"] / stats.steps, 3)
    out["steps_per_epoch"] = stats.steps
    first = (trainer.customer_embeddings.copy(), items.as_matrix())
    for _ in range(epochs - 1):
        items, _ = trainer.train(items, 1)
    totals = evaluate_ranking(split, catalogue, lambda rows: trainer.scores(items, rows), items.bias, seed=0,
                              share=0.0)
    out["hr@10"] = round(totals.metrics(share=0.0)["hr@10"], 4)
    start = time.process_time()
    trainer.train(items, 1, train_items=False)
    out["customer_epoch_s"] = round(time.process_time() - start, 3)
    start = time.process_time()
    trainer.train(items, 1, DPConfig(noise_multiplier=1.0, sample_rate=1.0))
    out["dp_full_batch_step_s"] = round(time.process_time() - start, 3)
    return {"figures": out, "tables": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", default="1000,10000", help="customers of the one partner, comma-separated")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5, help="BPR epochs before HR@10 is scored")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result: dict[str, Any] = {"items": args.items, "epochs": args.epochs, "sizes": {}}
    for size in (int(s) for s in args.customers.split(",")):
        split, catalogue = partner_split(size, args.items, args.seed)
        runs = {mode: measure(split, catalogue, mode == "dense", args.epochs, args.seed)
                for mode in ("dense", "sparse")}
        (p_d, q_d), (p_s, q_s) = runs["dense"]["tables"], runs["sparse"]["tables"]
        dense, sparse = runs["dense"]["figures"], runs["sparse"]["figures"]
        result["sizes"][str(size)] = {
            "dense": dense, "sparse": sparse,
            "bpr_step_speedup": round(dense["bpr_step_ms"] / sparse["bpr_step_ms"], 2),
            "customer_epoch_speedup": round(dense["customer_epoch_s"] / sparse["customer_epoch_s"], 2),
            "max_abs_diff_after_one_epoch": {"customers": float(np.abs(p_d - p_s).max()),
                                             "items": float(np.abs(q_d - q_s).max())},
        }
        print(json.dumps({size: result["sizes"][str(size)]}), flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

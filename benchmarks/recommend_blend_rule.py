"""Which blend-choice rule keeps "joining never hurts" on test (issue 18, item 3): replayed on a finished run.

Run (after a ``benchmarks/recommend_scaling.py`` or ``fedinsight simulate recommend`` run; minutes per run folder):

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/recommend_blend_rule.py \
        --run runs/scaling/run-3000-eps-3 --data runs/scaling/data-3000

For every partner of the run, on its own machine's data (its folder), with the federated item table the run released
(``RUN/model``): the partner's validation folds (next-latest, then the ones before, held out, up to four; one fold from
500 customers), the federated side and every alone-model fitted on each fold exactly as
:func:`fedinsight.tasks.recommend.blending.choose_on_validation` fits them, and the same models refitted on the full
split and scored on the partner's *test* customers. Every rule below chooses from the validation figures only; the
test figures of every candidate are computed once, so the rules are compared on the very same fitted models (paired):

* ``current``: the task's rule before job rec3 (two pooled folds): best alone-model by validation HR@10 (then
  NDCG@10), weight from {0, .25, .5, .75, 1} by validation HR@10, then NDCG@10, ties to the larger federated weight;
* ``fine-grid``: the same on weights k/8;
* ``ndcg-first``: the same grid ranked by NDCG@10 first (a smoother figure than a hit count);
* ``alone-within-se``: ``current``, but the alone-model (w = 0) unless the chosen blend beats it on validation by more
  than one standard error of the paired per-customer HR@10 difference (clustered by customer:
  :func:`fedinsight.models.blend.clustered_se`);
* ``folds-4``, ``ndcg-first folds-4``, ``alone-within-se folds-4``: the same on four pooled validation folds (the task's
  default below 167 customers since issue 18's job rec3, :func:`fedinsight.tasks.recommend.blending.validation_folds`;
  a partner from 500 validation customers still uses one). ``alone-within-se folds-4`` is the task's default rule
  since issue 18 switched the margin on (``blending.MARGIN = 1.0``); ``folds-4`` is the default before that.

Printed per rule: mean test HR@10 / NDCG@10 of the served model over the partners' test customers, and the partners
whose served model is below their (validation-chosen) alone-model on test, by how much. Test lists here are scored
without exploration slots (the run's ``per_partner`` figures use the job's share, 0.2), so the absolute numbers differ
a little from the run's; the federated side is refitted from fresh customer embeddings (20 epochs, then the job's
personalisation), as on the validation folds. Nothing here chooses on test: the test figures only judge the rules.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

FINE = tuple(k / 8 for k in range(9))
COARSE = (0.0, 0.25, 0.5, 0.75, 1.0)


def _per_customer(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from fedinsight.models.ranking import hit_and_ndcg

    return hit_and_ndcg(scores, 10)


def candidate_table(fed: np.ndarray, alones: dict[str, np.ndarray]) -> dict[tuple[str, float], tuple[Any, Any]]:
    """(alone name, weight) -> per-customer (HR@10, NDCG@10) of the blend, for every weight of FINE."""
    return {(name, w): _per_customer(w * fed + (1 - w) * alone) for name, alone in alones.items() for w in FINE}


def _pooled(tables: list[dict[tuple[str, float], tuple[Any, Any]]]) -> dict[tuple[str, float], tuple[Any, Any]]:
    """The folds' per-customer figures stacked, candidate by candidate."""
    return {key: (np.concatenate([t[key][0] for t in tables]), np.concatenate([t[key][1] for t in tables]))
            for key in tables[0]}


def choose(tables: list[dict[tuple[str, float], tuple[Any, Any]]], customers: list[np.ndarray],
           rule: str) -> tuple[str, float]:
    """A rule's (alone-model, weight) from the validation folds' figures only."""
    from fedinsight.models.blend import clustered_se
    from fedinsight.tasks.recommend.blending import MARGIN

    folds = RULE_FOLDS[rule]
    table = _pooled(tables[:folds])
    who = np.concatenate(customers[:folds])
    names = sorted({name for name, _ in table})
    mean = {key: (float(h.mean()), float(n.mean())) for key, (h, n) in table.items()}
    alone = max(names, key=lambda name: mean[(name, 0.0)])
    grid = FINE if rule == "fine-grid" else COARSE
    if rule.startswith("ndcg-first"):
        weight = max(grid, key=lambda w: (mean[(alone, w)][1], mean[(alone, w)][0], w))
    else:
        weight = max(grid, key=lambda w: (*mean[(alone, w)], w))
    if rule.startswith("alone-within-se") and weight > 0:  # the task's margin (one standard error since issue 18)
        diff = (table[(alone, weight)][0] - table[(alone, 0.0)][0]).astype(np.float64)
        if diff.mean() <= MARGIN * clustered_se(diff, who):
            weight = 0.0
    return alone, weight


RULES = ("current", "fine-grid", "ndcg-first", "alone-within-se", "folds-4", "ndcg-first folds-4",
         "alone-within-se folds-4")
RULE_FOLDS = {"current": 2, "fine-grid": 2, "ndcg-first": 2, "alone-within-se": 2, "folds-4": 4,
              "ndcg-first folds-4": 4, "alone-within-se folds-4": 4}
"""How many validation folds a rule pools (a partner from ONE_FOLD_CUSTOMERS validation customers uses one)."""


def replay_partner(folder: Path, items: Any, catalogue: Any, settings: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import replace

    from fedinsight.models.alone import candidates, refit_alone
    from fedinsight.models.blend import candidate_scores, clustered_se, validation_candidates
    from fedinsight.models.ranking import evaluation_candidates, leave_latest_out
    from fedinsight.models.recommender import BPRConfig
    from fedinsight.partner.side import open_partner
    from fedinsight.tasks.recommend.blending import (
        ALONE_EPOCHS,
        MIN_VALIDATION_CUSTOMERS,
        ONE_FOLD_CUSTOMERS,
            federated_on,
    )

    data = open_partner(folder, "recommendation").data()
    split = leave_latest_out(data.interactions, catalogue)
    depth = max(RULE_FOLDS.values())
    folds = [leave_latest_out(data.interactions, catalogue, skip_latest=s) for s in range(1, depth + 1)]
    folds = [f for f in folds if f.num_customers >= MIN_VALIDATION_CUSTOMERS]
    if folds and folds[0].num_customers >= ONE_FOLD_CUSTOMERS:
        folds = folds[:1]
    n, seed = catalogue.num_items, int(settings.get("seed", 0))
    cfg = BPRConfig(dim=int(settings["dim"]), lr=float(settings["lr"]), customer_lr=float(settings["customer_lr"]))
    personalize = int(settings["personalize_epochs"])
    tables, customers, first_alones, first_fold = [], [], None, None
    for fold in folds:
        cands = validation_candidates(fold, split, n, seed)
        trainer, fed_items = federated_on(fold, n, items, cfg, personalize, None)
        alones = candidates(fold, n, dim=cfg.dim, epochs=ALONE_EPOCHS)
        if first_alones is None:
            first_alones, first_fold = alones, fold
        fed = candidate_scores(lambda r, t=trainer, q=fed_items: t.scores(q, r), cands)
        tables.append(candidate_table(fed, {name: candidate_scores(model.scorer(fold, n), cands)
                                            for name, model in alones.items()}))
        customers.append(np.asarray(fold.customer_ids))
    # the same models on the full split, scored on the test customers
    test_cands = evaluation_candidates(split, n, seed)
    trainer, fed_items = federated_on(split, n, items, replace(cfg, optimizer="adam"), personalize, None)
    fed_test = candidate_scores(lambda r: trainer.scores(fed_items, r), test_cands)
    alone_test = {}
    for name, model in (first_alones or {}).items():
        refit = refit_alone(model, first_fold, split, n, dim=cfg.dim)
        alone_test[name] = candidate_scores(refit.scorer(split, n), test_cands)
    test = candidate_table(fed_test, alone_test)
    out: dict[str, Any] = {"customers": split.num_customers, "validation_folds": len(tables),
                           "validation_customers": [len(c) for c in customers]}
    for rule in RULES:
        alone, weight = choose(tables, customers, rule)
        pooled, who = _pooled(tables[:RULE_FOLDS[rule]]), np.concatenate(customers[:RULE_FOLDS[rule]])
        gain = (pooled[(alone, weight)][0] - pooled[(alone, 0.0)][0]).astype(np.float64)
        hr, ndcg = test[(alone, weight)]
        alone_hr = test[(alone, 0.0)][0]
        out[rule] = {"alone": alone, "weight": weight, "hr@10": float(hr.mean()), "ndcg@10": float(ndcg.mean()),
                     "alone_hr@10": float(alone_hr.mean()),
                     "served_minus_alone": round(float(hr.mean() - alone_hr.mean()), 4),
                     "validation_gain": round(float(gain.mean()), 4),
                     "validation_gain_se": round(clustered_se(gain, who), 4) if gain.any() else 0.0}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a recommend run folder (summary.json, model/)")
    parser.add_argument("--data", type=Path, required=True, help="the partner folders the run used")
    parser.add_argument("--partners", type=int, default=0, help="only the first N partners (0: all)")
    args = parser.parse_args()
    from fedinsight.models.recommender import ItemParams
    from fedinsight.tasks.recommend.serving import ItemModel

    summary = json.loads((args.run / "summary.json").read_text())
    model = ItemModel.load(args.run / "model")
    items = ItemParams(model.embeddings, model.bias)
    folders = sorted(p for p in args.data.iterdir() if p.is_dir() and (p / "interactions.csv").exists()
                     or p.is_dir() and any(p.glob("interactions*")))
    if args.partners:
        folders = folders[:args.partners]
    partners = {}
    for folder in folders:
        partners[folder.name] = replay_partner(folder, items, model.catalogue, summary["settings"])
        print(json.dumps({folder.name: partners[folder.name]}), flush=True)
    totals = {}
    for rule in RULES:
        weight = sum(p["customers"] for p in partners.values())
        totals[rule] = {
            "hr@10": round(sum(p[rule]["hr@10"] * p["customers"] for p in partners.values()) / weight, 4),
            "ndcg@10": round(sum(p[rule]["ndcg@10"] * p["customers"] for p in partners.values()) / weight, 4),
            "alone_hr@10": round(sum(p[rule]["alone_hr@10"] * p["customers"] for p in partners.values()) / weight, 4),
            "partners_below_alone": {n: p[rule]["served_minus_alone"] for n, p in partners.items()
                                     if p[rule]["served_minus_alone"] < 0},
            "weights": [p[rule]["weight"] for p in partners.values()],
        }
    print(json.dumps({"run": str(args.run), "epsilon": summary["settings"].get("epsilon"), "rules": totals,
                      "partners": partners}, indent=2))


if __name__ == "__main__":
    main()

"""What a recommender simulation adds: the pooled public catalogue, and the baselines on the same split.

The baselines run in the simulation driver, on the partners' protected views (consent for recommendation,
erasures applied), with the same leave-latest-one-out test items and the same 99 negatives per customer:
popularity, centralized non-private BPR-MF with the same dimensions on the pooled customers, and "local
only" -- every partner training alone on its own customers, the thing federation must beat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.core.errors import DataValidationError, Problem
from fedinsight.data.schema import PartnerData
from fedinsight.federation import progress
from fedinsight.federation.task import Simulated
from fedinsight.models.ranking import (
    Catalogue,
    InteractionSplit,
    RankingTotals,
    evaluate_ranking,
    leave_latest_out,
    popularity_scores,
)
from fedinsight.models.recommender import BPRConfig, ItemParams, fit_bpr
from fedinsight.tasks.recommend.options import RecommendOptions
from fedinsight.tasks.recommend.per_partner import per_partner

CATALOGUE_FILE = "catalogue.parquet"

Progress = Callable[[str, int, int], None]


def _pooled_interactions(partners: dict[str, PartnerData]) -> pd.DataFrame:
    frames = [p.interactions for p in partners.values() if p.interactions is not None]
    if not frames:
        raise DataValidationError(Problem("interactions", "no partner has an interactions table"))
    return pd.concat(frames, ignore_index=True)  # type: ignore[arg-type]


def _catalogue_table(partners: dict[str, PartnerData]) -> pd.DataFrame:
    tables = [p.items for p in partners.values() if p.items is not None]
    if not tables:
        raise DataValidationError(Problem("items", "no partner has an items table (the shared catalogue)"))
    return pd.concat(tables, ignore_index=True).drop_duplicates("item_id")  # type: ignore[arg-type]


def _bpr_totals(split: InteractionSplit, catalogue: Catalogue, config: BPRConfig, epochs: int, seed: int,
                explore: float, on_epoch: Callable[[int], None] | None = None) -> RankingTotals:
    trainer, items = fit_bpr(split, catalogue.num_items, config, epochs, seed, on_epoch)
    return evaluate_ranking(split, catalogue, lambda rows: trainer.scores(items, rows), items.bias, seed=seed,
                            share=explore)


def baselines(partners: dict[str, PartnerData], catalogue: Catalogue, options: RecommendOptions,
              progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Popularity, centralized BPR-MF and local-only metrics on the federation's split; and their times."""
    config = BPRConfig(dim=options.dim)
    split = leave_latest_out(_pooled_interactions(partners), catalogue)
    timing: dict[str, float] = {}
    start = time.perf_counter()
    pop = popularity_scores(split, catalogue.num_items)
    popularity = evaluate_ranking(split, catalogue, lambda rows: np.broadcast_to(pop, (len(rows), len(pop))), pop,
                                  seed=options.seed, share=options.explore)
    timing["popularity_s"] = time.perf_counter() - start
    start = time.perf_counter()
    epochs = options.baseline_epochs
    central = _bpr_totals(split, catalogue, config, epochs, options.seed, options.explore,
                          (lambda e: progress("centralized BPR-MF", e, epochs)) if progress else None)
    timing["centralized_s"] = time.perf_counter() - start
    metrics = {"popularity": popularity.metrics(share=options.explore),
               "centralized": central.metrics(share=options.explore)}
    if options.local_only:
        start = time.perf_counter()
        alone = RankingTotals.empty(catalogue.num_items, catalogue.has_attribute)
        for k, data in enumerate(partners.values()):
            if data.interactions is None:
                continue
            own = leave_latest_out(data.interactions, catalogue)  # type: ignore[arg-type]
            if own.num_customers:
                alone = alone + _bpr_totals(own, catalogue, config, epochs, options.seed + k, options.explore)
            if progress:
                progress("each partner alone", k + 1, len(partners))
        metrics["local_only"] = alone.metrics(share=options.explore)
        timing["local_only_s"] = time.perf_counter() - start
    return metrics, timing


def ratios(metrics: dict[str, Any], k: int = 10) -> dict[str, float | None]:
    """Federated (and, if partners personalised, the shared model alone) over each baseline: HR@k, NDCG@k."""
    out: dict[str, float | None] = {}
    for model in ("federated", "federated_global", "served"):
        if model not in metrics:
            continue
        for base in ("centralized", "popularity", "local_only", "partner_alone"):
            if base in metrics:
                for m in (f"hr@{k}", f"ndcg@{k}"):
                    denominator = metrics[base].get(m)
                    out[f"{model}/{base} {m}"] = round(metrics[model][m] / denominator, 4) if denominator else None
    return out


def simulation_options(options: RecommendOptions, sim: Simulated, purpose: str) -> dict[str, Any]:
    """The public catalogue: the partners' items tables pooled, written into the run folder."""
    if options.catalogue_path:
        return {}
    path = sim.out_dir / CATALOGUE_FILE
    _catalogue_table(sim.views(purpose)).to_parquet(path, index=False)
    return {"catalogue_path": str(path)}


def simulation_baselines(options: RecommendOptions, sim: Simulated, purpose: str) -> dict[str, Any]:
    partners = sim.views(purpose)
    catalogue = Catalogue.from_items(_catalogue_table(partners))
    metrics, timing = baselines(partners, catalogue, options,
                                lambda stage, done, total: progress.report(stage, done, total))

    def after(summary: dict[str, Any]) -> dict[str, Any] | None:
        """Once the job has run: every partner's served, federated and alone models on its test customers."""
        model = (summary.get("artifacts") or {}).get("model")
        if sim.vaults is None or not model or not (Path(model) / "items.npz").is_file():
            return None
        with np.load(Path(model) / "items.npz", allow_pickle=False) as data:
            items = ItemParams(np.array(data["embeddings"]), np.array(data["bias"]))
        return per_partner(partners, sim.vaults(), str(summary.get("job_id", "")), items, catalogue,
                           seed=options.seed, explore=options.explore, k=options.k)

    return {"metrics": metrics, "timing": timing, "after": after}


PER_PARTNER_NOTE = ("simulation only, exact: each partner's models as it keeps them (served blend, its federated "
                    "model, its alone-model chosen on its validation customers, its own popularity), on its test "
                    "customers; a deployed partner releases none of these")


def merge(summary: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    summary["metrics"] = {**summary["metrics"], **extra.get("metrics", {})}
    after = extra.get("after")
    found = after(summary) if after is not None else None
    if found is not None:
        summary["per_partner"] = {"note": PER_PARTNER_NOTE, **found["partners"]}
        for model, block in found["totals"].items():
            summary["metrics"][model] = {**block, "note": PER_PARTNER_NOTE}
    summary["metrics"]["ratios"] = ratios(summary["metrics"])
    summary["timing"] = {**summary.get("timing", {}), **{k: round(v, 3) for k, v in extra.get("timing", {}).items()}}
    return summary

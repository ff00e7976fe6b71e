"""``fedinsight simulate recommend``: a federated recommender run plus its baselines, on one machine.

The federation is written to ``OUT/partners/partner-<k>`` first and each simulated partner reads only
its own folder (through Flower's runtime, :mod:`fedinsight.tasks.recommend.client`). The baselines run here,
in the same command and on the same split (same leave-latest-one-out test items, same 99 negatives per
customer): popularity, centralized non-private BPR-MF with the same dimensions on the pooled data, and
"local only" — every partner training alone on its own customers, the thing federation must beat.

Output: ``OUT/summary.json`` (shape shared with the propensity task), ``OUT/model`` (the item model
partners serve from), ``OUT/ledger.db`` (unless ``db_url``), ``OUT/partners`` with each partner's
private customer state in ``.fedinsight-state``. Everything appears at once or not at all.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError, DataValidationError, Problem
from fedinsight.data.schema import PartnerData
from fedinsight.models.ranking import (
    Catalogue,
    InteractionSplit,
    RankingTotals,
    evaluate_ranking,
    leave_latest_out,
    popularity_scores,
)
from fedinsight.models.recommender import BPRConfig, fit_bpr

PARTITIONS = ("iid", "zip", "dirichlet")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RecommendSimulation:
    """Options of one simulated run (the CLI's flags)."""

    dataset: str = "movielens-100k"
    partners: int = 10
    rounds: int = 50
    epsilon: float = math.inf
    delta: float | None = None  # default: 1 / number of customers
    partition: str = "iid"
    alpha: float = 0.5
    dim: int = 32
    explore: float = 0.2
    seed: int = 0
    local_epochs: int = 2
    sample_rate: float = 1.0
    clip: float = 1.0
    dp_lr: float = 5.0
    popularity_share: float = 0.0
    server_optimizer: str = "fedavg"
    server_lr: float = 1.0
    personalize_epochs: int = 0
    baseline_epochs: int = 50
    local_only: bool = True
    eval_every: int = 0
    noise_model: str = "local"
    honest_partners: int = 0
    max_dropouts: int = 0
    budget: float | None = None
    db_url: str | None = None
    synthetic_customers: int = 5_000
    cpus: int | None = None

    def __post_init__(self) -> None:
        """Refuse bad options before any data is loaded or written."""
        checks = [
            (self.partition in PARTITIONS,
             f"--partition must be one of {', '.join(PARTITIONS)} (got {self.partition})"),
            (self.partners >= 1, f"--partners must be at least 1 (got {self.partners})"),
            (self.rounds >= 1, f"--rounds must be at least 1 (got {self.rounds})"),
            (self.epsilon > 0, f"--epsilon must be positive, or inf for no DP (got {self.epsilon})"),
            (self.delta is None or 0 < self.delta < 1, f"--delta must be in (0, 1) (got {self.delta})"),
            (1 <= self.dim <= 1024, f"--dim must be between 1 and 1024 (got {self.dim})"),
            (0 <= self.explore < 1, f"--explore must be in [0, 1) (got {self.explore})"),
            (self.baseline_epochs >= 1, f"--baseline-epochs must be at least 1 (got {self.baseline_epochs})"),
            (self.local_epochs >= 1, f"--local-epochs must be at least 1 (got {self.local_epochs})"),
            (self.personalize_epochs >= 0, f"--personalize must be >= 0 (got {self.personalize_epochs})"),
            (0 <= self.popularity_share < 1, f"--popularity-share must be in [0, 1) (got {self.popularity_share})"),
            (self.noise_model in ("local", "distributed-secagg"),
             f"--noise-model must be local or distributed-secagg (got {self.noise_model})"),
        ]
        if self.noise_model == "distributed-secagg" and math.isfinite(self.epsilon):  # fail before data is written
            checks += [
                (self.local_epochs == 1 and self.sample_rate == 1.0,
                 "--noise-model distributed-secagg runs one full-batch DP step per round: use --local-epochs 1 "
                 "and --sample-rate 1"),
                (self.popularity_share == 0, "--popularity-share is not available with distributed-secagg noise"),
                (0 <= self.honest_partners <= self.partners,
                 f"--honest-partners must be between 1 and --partners ({self.partners}), or 0 for all"),
                (0 <= self.max_dropouts < (self.honest_partners or self.partners),
                 "--max-dropouts must be below the number of honest partners"),
            ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


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
                            share=explore,
                            diversity_features=None if catalogue.genres.shape[1] else items.embeddings)


def baselines(partners: dict[str, PartnerData], catalogue: Catalogue, options: RecommendSimulation,
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
        alone = RankingTotals.empty(catalogue.num_items)
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
    for model in ("federated", "federated_global"):
        if model not in metrics:
            continue
        for base in ("centralized", "popularity", "local_only"):
            if base in metrics:
                for m in (f"hr@{k}", f"ndcg@{k}"):
                    denominator = metrics[base].get(m)
                    out[f"{model}/{base} {m}"] = round(metrics[model][m] / denominator, 4) if denominator else None
    return out


def simulate_recommend(options: RecommendSimulation, out: str | Path, *, overwrite: bool = False,
                       progress: Progress | None = None) -> dict[str, Any]:
    """Run the whole simulation into ``out``; returns the summary (also in ``out/summary.json``)."""
    import fedinsight.tasks.recommend.server as server
    from fedinsight.core.files import atomic_output_dir
    from fedinsight.data.federation import PartitionSpec, load_federation, write_partner_folder
    from fedinsight.federation.simulation import run_simulation

    started = time.perf_counter()
    scheme = "zip" if options.partition == "zip" else options.partition
    partners = load_federation(options.dataset, PartitionSpec(partners=options.partners, scheme=scheme,
                                                               alpha=options.alpha, seed=options.seed),
                               **({"synthetic_customers": options.synthetic_customers}
                                  if options.dataset == "synthetic" else {}))
    if len(partners) != options.partners:
        raise ConfigError(
            f"--dataset {options.dataset} holds {len(partners)} partners but --partners is {options.partners}"
        )
    catalogue_frame = _catalogue_table(partners)
    catalogue = Catalogue.from_items(catalogue_frame)
    customers = sum(p.num_customers for p in partners.values())
    delta = options.delta if options.delta is not None else 1.0 / max(customers, 2)
    from fedinsight.partner.protection import init_federation

    # A folder whose partners are already partner-0..K-1 is used in place: each simulated partner reads its own
    # folder and no partner's rows are copied into the run's output; built-in data is written for the partners.
    source = Path(options.dataset)
    in_place = source.is_dir() and sorted(partners) == sorted(f"partner-{k}" for k in range(options.partners))
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        data_root = source.resolve() if in_place else tmp / "partners"
        if not in_place:
            write_partner_folder(partners, data_root)
            init_federation(data_root)  # built-in data: declare the identifier columns fedinsight planted
        catalogue_frame.to_parquet(tmp / "catalogue.parquet", index=False)
        run_config: dict[str, Any] = {
            "task": "recommend", "dataset": options.dataset, "partners": options.partners, "rounds": options.rounds,
            "local-epochs": options.local_epochs, "dim": options.dim, "epsilon": float(options.epsilon),
            "delta": delta, "sample-rate": options.sample_rate, "clip": options.clip, "dp-lr": options.dp_lr,
            "popularity-share": options.popularity_share,
            "seed": options.seed, "explore": options.explore, "server-optimizer": options.server_optimizer,
            "server-lr": options.server_lr, "personalize-epochs": options.personalize_epochs,
            "eval-every": options.eval_every, "noise-model": options.noise_model,
            "honest-partners": options.honest_partners, "max-dropouts": options.max_dropouts,
            "catalogue-path": str(tmp / "catalogue.parquet"),
            "out-dir": str(tmp), "data-root": str(data_root),
            "db-url": options.db_url or f"sqlite:///{tmp / 'ledger.db'}",
        }
        if options.budget is not None:
            run_config["budget"] = float(options.budget)
        metrics, timing = baselines(partners, catalogue, options, progress)
        server.set_progress(progress)
        sim_start = time.perf_counter()
        try:
            cpus = options.cpus or min(2, os.cpu_count() or 1)
            run_simulation(run_config, options.partners, cpus=cpus, cpus_per_partner=1.0)
        finally:
            server.set_progress(None)
        timing["simulation_s"] = time.perf_counter() - sim_start
        summary_path = tmp / "summary.json"
        if not summary_path.is_file():
            raise ConfigError("the federated run ended without writing summary.json (see the log above)")
        summary = json.loads(summary_path.read_text())
        summary["metrics"] = {**summary["metrics"], **metrics}
        summary["metrics"]["ratios"] = ratios(summary["metrics"])
        summary["partition"] = options.partition
        summary["timing"] = {**summary["timing"], **{k: round(v, 3) for k, v in timing.items()},
                             "federated_wall_s": summary["timing"]["wall_s"],
                             "wall_s": round(time.perf_counter() - started, 3)}
        summary_path.write_text(json.dumps(summary, indent=2))
    return summary

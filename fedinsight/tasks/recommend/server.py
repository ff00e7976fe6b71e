"""The coordinator side of the federated recommender.

A job, after the framework's hello (each partner checks its data against the catalogue and states its
number of customers) and the ledger charge of the whole job (planned here, :func:`plan`): rounds of
``train.recommend`` -- each partner runs local epochs from the global item table and returns the table's
change -- aggregated item-wise (or, with ``noise-model = distributed-secagg``, SecAgg+ rounds whose sum
carries the noise, :mod:`.secure_server`); a final ``evaluate.recommend``; the item model in the job's
output folder.

Aggregation. Without DP, each item's change is averaged over the partners weighted by how many of
their customers touched that item (a partner that never saw an item does not dilute its update).
Those counts are themselves customer data, so under DP they are not sent: partners are weighted by
their number of customers (public, as DP-SGD's sample rate already assumes) and each item's averaged
change is shrunk James-Stein-style towards zero by the known variance of the noise the partners
added (post-processing: only released values and public parameters are used). Items whose change
is mostly noise then stay put instead of drifting. An optional FedAdam server optimizer acts on the
averaged change.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dp_accounting import dp_event
from flwr.app import Array, ArrayRecord

import fedinsight.tasks.recommend.secure_server as recommend_secagg
from fedinsight.core.errors import ConfigError, DataValidationError, Problem
from fedinsight.federation import progress
from fedinsight.federation.budget import DEFAULT_DELTA, Charge, delta_limit
from fedinsight.federation.manifest import PUBLIC, Manifest, Release
from fedinsight.federation.secagg import secagg_releases
from fedinsight.federation.task import Plan, Session, TaskResult
from fedinsight.models.ranking import Catalogue, RankingTotals
from fedinsight.models.recommender import ItemParams
from fedinsight.privacy.ledger import compose_epsilon, dpsgd_event
from fedinsight.privacy.mechanisms import GAUSSIAN_Z95
from fedinsight.tasks.recommend.options import PrivacyPlan, RecommendOptions

MODEL_DIRNAME = "model"

# --- the job -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecommendJob:
    """A recommender job as the coordinator runs it: its options, the federation's size and the resolved delta
    (the options' attributes read through)."""

    options: RecommendOptions
    partners: int
    delta: float
    job_id: str
    timeout_s: float

    def __getattr__(self, name: str) -> Any:
        return getattr(self.options, name)

    @property
    def honest(self) -> int:
        return self.options.honest(self.partners)


def load_catalogue(path: str | Path) -> Catalogue:
    """The public item catalogue from an ``items`` table file (.parquet or .csv)."""
    file = Path(path)
    if not file.is_file():
        raise DataValidationError(Problem(str(file), "catalogue file does not exist"))
    frame = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file, dtype=str)
    return Catalogue.from_items(frame)


# --- messaging -----------------------------------------------------------------------------------



# --- aggregation ---------------------------------------------------------------------------------

def itemwise_average(deltas: list[np.ndarray], weights: list[np.ndarray]) -> np.ndarray:
    """Per item row: the weighted mean of the partners' changes (rows nobody weighted stay 0)."""
    w = np.stack(weights).astype(np.float64)  # (partners, items)
    d = np.stack(deltas).astype(np.float64)  # (partners, items, width)
    total = w.sum(axis=0)
    return np.where(total[:, None] > 0, (w[:, :, None] * d).sum(axis=0) / np.maximum(total, 1e-12)[:, None], 0.0)


def james_stein(update: np.ndarray, noise_var: float) -> tuple[np.ndarray, np.ndarray]:
    """Positive-part James-Stein shrinkage towards 0, given the per-coordinate noise variance.

    Each item's embedding change (a row without the bias column) is scaled by
    ``max(0, 1 - (dim - 2) * noise_var / ||row||^2)``; the bias column, one number per item, is shrunk
    as one vector the same way. Returns the shrunk update and the per-item embedding factors.
    """
    emb, bias = update[:, :-1], update[:, -1]
    factor = np.ones(len(update))
    if noise_var <= 0:
        return update, factor
    if emb.shape[1] >= 3:
        norms = (emb**2).sum(axis=1)
        factor = np.maximum(0.0, 1.0 - (emb.shape[1] - 2) * noise_var / np.maximum(norms, 1e-30))
        emb = emb * factor[:, None]
    if len(bias) >= 3:
        bias = bias * max(0.0, 1.0 - (len(bias) - 2) * noise_var / max(float((bias**2).sum()), 1e-30))
    return np.concatenate([emb, bias[:, None]], axis=1), factor


def dp_update_noise_variance(job: RecommendJob, noise_multiplier: float, sizes: list[int],
                             steps: list[int]) -> float:
    """Per-coordinate variance of the DP noise in the size-weighted average of the partners' changes.

    Each partner's item SGD step adds ``dp_lr * N(0, (sigma C)^2) / (q N_k)`` to every coordinate,
    ``steps_k`` times per round; averaging with weights N_k / sum N adds the variances with squared weights.
    """
    total = float(sum(sizes))
    var = 0.0
    for n_k, s_k in zip(sizes, steps, strict=True):
        per_step = job.dp_lr * noise_multiplier * job.clip / (job.sample_rate * n_k)
        var += (n_k / total) ** 2 * s_k * per_step**2
    return var


class ServerOptimizer:
    """FedAvg (``params += lr * update``) or FedAdam (Reddi et al. 2021, tau-smoothed Adam on the update)."""

    def __init__(self, kind: str, lr: float, shape: tuple[int, ...], tau: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.99)) -> None:
        self.kind, self.lr, self.tau, self.betas = kind, lr, tau, betas
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)

    def step(self, params: np.ndarray, update: np.ndarray) -> np.ndarray:
        if self.kind == "fedavg":
            return params + self.lr * update
        b1, b2 = self.betas
        self.m = b1 * self.m + (1 - b1) * update
        self.v = b2 * self.v + (1 - b2) * update**2
        return params + self.lr * self.m / (np.sqrt(self.v) + self.tau)


# --- the job's messages --------------------------------------------------------------------------

def message_config(session: Session, catalogue: Catalogue, noise_multiplier: float,
                   popularity_noise_multiplier: float, delta: float, eval_noise_multiplier: float = 0.0
                   ) -> dict[str, Any]:
    """What partners need besides the options (the run config does not reach simulated partners)."""
    return session.config("train", **{
        "delta": delta, "noise-multiplier": noise_multiplier, "pop-noise-multiplier": popularity_noise_multiplier,
        "eval-noise-multiplier": eval_noise_multiplier,
        "pop-clip": session.options.popularity_clip,  # type: ignore[attr-defined]
        **catalogue_config(catalogue)})


def catalogue_config(catalogue: Catalogue) -> dict[str, Any]:
    """The public catalogue, as partners receive it (ids, its attribute -- genres, category or none -- and
    its fingerprint)."""
    return {"item-ids": list(catalogue.item_ids), "item-attribute": catalogue.attribute or "",
            "item-attributes": catalogue.attribute_strings(), "catalogue-sha": catalogue.fingerprint()}


def _items(items: ItemParams) -> dict[str, Any]:
    return {"items": ArrayRecord({"items": Array(items.as_matrix())})}


def _evaluate(session: Session, job: RecommendJob, privacy: PrivacyPlan, config: dict[str, Any], items: ItemParams,
              catalogue: Catalogue, *, final: bool, rnd: int) -> tuple[dict[str, dict[str, Any]], float]:
    """One evaluation of ``items`` on every partner: the metrics blocks of summary.json and the partners' seconds.

    Private job: the partners' noised sums added up (:func:`noised_metrics`): ``federated`` is then the shared
    model's. Non-private job: the exact totals, ``federated`` for the model partners serve and ``federated_global``
    for the shared item model alone when partners personalise it."""
    replies = session.ask("evaluate", "evaluate", config={**config, "phase": "evaluate", "final": final,
                                                           "round": rnd}, records=_items(items))
    seconds = sum(float(r.content["metrics"].get("seconds", 0.0)) for r in replies.values())
    if job.private:
        fields = job.eval_fields()
        sums = {f: sum(float(r.content["release"][f]) for r in replies.values()) for f in fields}
        customers = sum(int(session.partners[n].facts["customers"]) for n in replies)
        return {"federated": noised_metrics(job, privacy, sums, customers, len(replies), catalogue)}, seconds
    totals: dict[str, RankingTotals] = {}
    for reply in replies.values():
        m = reply.content["metrics"]
        arrays = reply.content["totals"]
        for prefix in ("", "global-"):
            if prefix + "customers" not in m:
                continue
            part = RankingTotals(
                **{name: (int(m[prefix + name]) if name == "customers" else float(m[prefix + name]))
                   for name in RankingTotals.SCALARS},
                recommended=arrays[prefix + "recommended"].numpy().astype(np.int64),
                recommended_explore=arrays[prefix + "recommended-explore"].numpy().astype(np.int64),
                diversity=catalogue.has_attribute,
            )
            totals[prefix] = totals[prefix] + part if prefix in totals else part
    blocks = {"federated": totals[""].metrics(job.k, job.explore)}
    if "global-" in totals:
        blocks["federated_global"] = totals["global-"].metrics(job.k, job.explore)
    return blocks, seconds


def noised_metrics(job: RecommendJob, privacy: PrivacyPlan, sums: dict[str, float], customers: int, partners: int,
                   catalogue: Catalogue) -> dict[str, Any]:
    """Means from the partners' noised sums (post-processing): each sum over the public customer count, clamped to
    [0, 1]; with the noise's 95 % half-width on each mean and the epsilon of the job's evaluation releases.

    Coverage is not released under DP: it needs per-item recommendation counts, a histogram whose noise at a
    tenth of the budget would swamp the (mostly 0/1) counts of a catalogue's tail, so it is dropped, not guessed.
    """
    n = max(customers, 1)
    fields = job.eval_fields()
    std = privacy.eval_noise_multiplier * math.sqrt(len(fields)) * math.sqrt(partners)  # of each summed metric

    def mean(name: str) -> float | None:
        if name not in sums or (name.startswith("ild") and not catalogue.has_attribute):
            return None
        return round(min(1.0, max(0.0, sums[name] / n)), 6)

    k = job.k
    block: dict[str, Any] = {f"hr@{k}": mean("hr"), f"ndcg@{k}": mean("ndcg"), "coverage": None, "ild": mean("ild"),
                             "customers": customers, "noised": True,
                             "model": "the shared item table, with each customer's own embedding (partner-local "
                                      "personalisation is not released under DP)",
                             "ci95_halfwidth": round(GAUSSIAN_Z95 * std / n, 6),
                             "epsilon": round(compose_epsilon(privacy.evaluation_events(), job.delta), 6),
                             "releases": privacy.evaluations}
    if "hr_explore" in sums:
        explore: dict[str, Any] = {"share": job.explore, f"hr@{k}": mean("hr_explore"),
                                   f"ndcg@{k}": mean("ndcg_explore"), "coverage": None, "ild": mean("ild_explore"),
                                   "coverage_gain": None}
        hr, hr_x = block[f"hr@{k}"], explore[f"hr@{k}"]
        explore["hr_cost"] = None if hr is None or hr_x is None else round(hr - hr_x, 6)
        ild, ild_x = block["ild"], explore["ild"]
        explore["ild_gain"] = None if ild is None or ild_x is None else round(ild_x - ild, 6)
        block["explore"] = explore
    return block


def noise_model_text(job: RecommendJob) -> str:
    """The trust model, as the ledger and summary.json state it."""
    if not job.distributed:
        return "local noise: every partner adds the full N(0, (sigma C)^2) to its own update"
    return (f"distributed-secagg: SecAgg+ sum of {job.partners} partners, each adding a discrete-Gaussian share "
            f"N(0, (sigma C')^2 / {job.honest - job.max_dropouts}); assumes >= {job.honest} partners do not collude "
            f"with the coordinator, rounds with more than {job.max_dropouts} drop-out(s) are never unmasked")


def popularity_bias(counts: np.ndarray, noise_std: float = 0.0) -> np.ndarray:
    """Initial item biases from noisy customer counts: centred log(1 + max(0, count - 2 noise_std)).

    A trained BPR-MF bias tracks log popularity closely (correlation 0.98 on MovieLens-100K). Counts
    within two noise standard deviations of zero are indistinguishable from noise and all start at
    the same level (post-processing of the release: only its values and its public noise scale are used).
    """
    bias = np.log1p(np.maximum(np.asarray(counts, dtype=np.float64) - 2.0 * noise_std, 0.0))
    return (bias - bias.mean()).astype(np.float32)


def _train_round(session: Session, job: RecommendJob, config: dict[str, Any], items: ItemParams,
                 optimizer: ServerOptimizer, rnd: int, names: dict[int, str], sizes: dict[int, int],
                 sigma: float) -> tuple[ItemParams, dict[str, Any], float]:
    """One round: every partner trains from ``items``; their changes are averaged (and, under DP,
    shrunk) and applied. Returns the new item table, the round's record and the partners' seconds."""
    nodes = session.nodes
    replies = session.ask("train", "train", config={**config, "phase": "train", "round": rnd}, records=_items(items))
    deltas, weights, steps, losses, eps = [], [], [], [], []
    seconds = 0.0
    for n in nodes:
        reply = replies[n].content
        delta = reply["update"]["delta"].numpy()
        if delta.shape != items.as_matrix().shape:
            raise ConfigError(f"partner {names[n]} sent an update of shape {delta.shape}, "
                              f"expected {items.as_matrix().shape}")
        metrics = reply["metrics"]
        deltas.append(delta)
        steps.append(int(metrics["steps"]))
        seconds += float(metrics.get("seconds", 0.0))
        if job.private:
            weights.append(np.full(items.num_items, float(sizes[n])))
            eps.append(float(metrics["epsilon"]))
        else:
            weights.append(reply["update"]["item-customers"].numpy())
            losses.append((float(metrics["loss"]), sizes[n]))
    update = itemwise_average(deltas, weights)
    record: dict[str, Any] = {"round": rnd}
    if job.private and job.shrink:
        var = dp_update_noise_variance(job, sigma, [sizes[n] for n in nodes], steps)
        update, factor = james_stein(update, var)
        record["items_kept"] = int((factor > 0).sum())
    if losses:
        record["loss"] = round(sum(loss * n for loss, n in losses) / max(1, sum(n for _, n in losses)), 6)
    if eps:
        record["epsilon"] = round(max(eps), 6)
    return ItemParams.from_matrix(optimizer.step(items.as_matrix(), update)), record, seconds


def _distributed_round(session: Session, job: RecommendJob, config: dict[str, Any], items: ItemParams,
                       optimizer: ServerOptimizer, rnd: int, sizes: dict[int, int],
                       enc: Any) -> tuple[ItemParams, dict[str, Any]]:
    """One SecAgg+ round with distributed noise (:mod:`fedinsight.tasks.recommend.secure_server`)."""
    start = time.perf_counter()
    total, contributors = recommend_secagg.secure_sum(session, job, config, items, enc, rnd)
    update, noise_var = recommend_secagg.global_step(job, items, total, sum(sizes.values()), enc)
    record: dict[str, Any] = {"round": rnd, "secagg_partners": contributors,
                              "secagg_s": round(time.perf_counter() - start, 3)}
    if noise_var > 0:
        update, factor = james_stein(update, noise_var)
        record["items_kept"] = int((factor > 0).sum())
    return ItemParams.from_matrix(optimizer.step(items.as_matrix(), update)), record


def default_delta(sizes: list[int]) -> float:
    """The delta a job is stated at unless the submitter sets one: at most 1e-6, and at most 1 / (10 x the largest
    partner's customers) -- the most any partner accepts (:func:`fedinsight.federation.budget.delta_limit`, every
    task's rule). A private job's delta is normally resolved before this, from the partners' hello ceilings
    (:func:`fedinsight.federation.delta.resolve`)."""
    return min(DEFAULT_DELTA, delta_limit(max(sizes, default=1)))


def job_of(session: Session) -> RecommendJob:
    """The job's options, its size, and delta resolved (default: :func:`default_delta` of the hello counts)."""
    options: RecommendOptions = session.options  # type: ignore[assignment]
    sizes = [int(p.facts.get("customers", 0)) for p in session.partners.values()]
    delta = options.delta if options.delta is not None else default_delta(sizes)
    if options.private and sizes and delta > delta_limit(max(sizes)):
        raise ConfigError(f"--delta {delta:.3g} is above 1 / (10 x {max(sizes)} customers) = "
                          f"{delta_limit(max(sizes)):.3g}: the largest partner would refuse it; use a smaller delta")
    return RecommendJob(options, len(session.nodes), delta, session.job.job_id, session.job.timeout)


def plan(session: Session, task: str) -> Plan:
    """The job's manifest and its one ledger line (popularity release and every round's DP-SGD steps)."""
    options: RecommendOptions = session.options  # type: ignore[assignment]
    options.check_partners(len(session.nodes))
    job = job_of(session)
    catalogue = load_catalogue(options.catalogue_path)
    privacy = PrivacyPlan.for_job(job, job.delta)
    session.state.update(job=job, catalogue=catalogue, privacy=privacy)
    manifest = Manifest(task, tuple(releases(job, catalogue, privacy)))
    if not job.private:
        return Plan(manifest, [], {"non_private": True}, delta=job.delta)
    events = privacy.training_events(job)
    event = events[0] if len(events) == 1 else dp_event.ComposedDpEvent(events)
    popularity = (f"popularity release sigma {privacy.popularity_noise_multiplier:.4g} (C {job.popularity_clip:g}), "
                  if privacy.popularity_noise_multiplier else "")
    description = (f"recommender BPR-MF dim {job.dim}: {popularity}{job.rounds} rounds x {job.steps_per_round()} "
                   f"customer-level DP-SGD steps, sigma {privacy.noise_multiplier:.4g}, q {job.sample_rate:g}, "
                   f"C {job.clip:g}; {noise_model_text(job)}")
    charges = [Charge("training", event, description)]
    for evaluation in privacy.evaluation_events():
        charges.append(Charge("evaluation", evaluation, (
            f"recommender evaluation: {privacy.evaluations} Gaussian release(s) of per-customer {job.eval_metrics} "
            f"metric sums, sigma {privacy.eval_noise_multiplier:.4g} x L2 sqrt({len(job.eval_fields())}) "
            f"({job.eval_share:.0%} of the job's budget)")))
    return Plan(manifest, charges, eval_summary(job, privacy), delta=job.delta)


def eval_summary(job: RecommendJob, privacy: PrivacyPlan) -> dict[str, Any]:
    """What summary.json["privacy"] says about the job's delta and its evaluation releases."""
    return {"evaluation": {"releases": privacy.evaluations, "share": job.eval_share, "metrics": job.eval_metrics,
                           "mechanism": "gaussian (OpenDP)" if privacy.eval_noise_multiplier else
                           ("none" if not privacy.evaluations else "exact (non-private run)"),
                           "noise_multiplier": round(privacy.eval_noise_multiplier, 6),
                           "sensitivity": f"L2 sqrt({len(job.eval_fields())}): each customer adds a value in [0, 1] "
                                          f"to each of {', '.join(job.eval_fields())}"}}


def releases(job: RecommendJob, catalogue: Catalogue, privacy: PrivacyPlan) -> list[Release]:
    """Every value a partner sends in a recommender job."""
    width = job.dim + 1
    items = catalogue.num_items
    nonprivate = "non-private run: only partners that allow it (require-dp=false) take part"
    out = [Release("hello", "facts", {"customers": None}, PUBLIC, what="the partner's number of customers",
                   reason="treated as public, as DP-SGD's sample-rate convention assumes: it weights partners in the "
                          "average and bounds the distributed-noise encoding")]
    if privacy.popularity_noise_multiplier:
        out += [Release("popularity", "release", {"popularity": (items,)}, "gaussian", kind="arrays",
                        what="clipped per-item customer counts, for the initial item biases",
                        sensitivity=f"L2 {job.popularity_clip:g} per customer",
                        event=dpsgd_event(privacy.popularity_noise_multiplier, 1.0, 1)),
                Release("popularity", "metrics", {"epsilon": None}, PUBLIC, what="the job's epsilon so far",
                        reason="a function of the job's public noise parameters")]
    steps = job.steps_per_round()
    if job.distributed:
        out += secagg_releases(update_event=dpsgd_event(privacy.noise_multiplier, 1.0, 1), count=job.rounds,
                               what="the clipped item-table gradient sum plus this partner's discrete-Gaussian "
                                    "noise share, masked",
                               sensitivity=f"customer-level L2 {job.clip:g}")
    elif job.private:
        out.append(Release("train", "update", {"delta": (items, width)}, "dp-sgd", kind="arrays",
                           what="the change of the item table after local customer-level DP-SGD",
                           sensitivity=f"customer-level L2 {job.clip:g}, noise multiplier "
                                       f"{privacy.noise_multiplier:.4g}, sample rate {job.sample_rate:g}, "
                                       f"{steps} steps per round",
                           event=dpsgd_event(privacy.noise_multiplier, job.sample_rate, steps), count=job.rounds))
    else:
        out.append(Release("train", "update", {"delta": (items, width), "item-customers": (items,)}, PUBLIC,
                           kind="arrays", what="the item table's change and who touched each item", reason=nonprivate))
    train_metrics = {"steps": None, **({"epsilon": None} if job.private else {"loss": None, "seconds": None})}
    if not job.distributed:
        out.append(Release("train", "metrics", train_metrics, PUBLIC,
                           what="steps and the job's epsilon (DP), or steps, the loss and the training time (0.1 s) "
                                "(non-private)",
                           reason="steps and epsilon follow from public parameters" + (
                               "; a DP job sends no timing (it grows with the partner's data)" if job.private
                               else f"; {nonprivate}")))
    out += evaluation_releases(job, catalogue, privacy, nonprivate)
    return out


def evaluation_releases(job: RecommendJob, catalogue: Catalogue, privacy: PrivacyPlan, nonprivate: str
                        ) -> list[Release]:
    """The evaluate reply: under DP one Gaussian release of the shared model's per-customer metric sums; without
    DP exact totals (and the personalised model's too); nothing when evaluation is off."""
    count = privacy.evaluations
    if not count:
        return []
    fields = job.eval_fields()
    if job.private:
        return [Release("evaluate", "release", {f: None for f in fields}, "gaussian",
                        what=f"sums over the partner's customers of the shared model's {', '.join(fields)} "
                             f"(latest interaction vs 99 unseen items), OpenDP Gaussian, sigma "
                             f"{privacy.eval_noise_multiplier:.4g} x the L2 bound",
                        sensitivity=f"L2 sqrt({len(fields)}) per customer: each adds a value in [0, 1] to each sum",
                        event=dp_event.GaussianDpEvent(privacy.eval_noise_multiplier), count=count),
                Release("evaluate", "metrics", {"epsilon": None}, PUBLIC, what="the job's epsilon so far",
                        reason="it follows from public noise parameters (a DP job sends no timing: it grows with the "
                               "partner's data)")]
    items = catalogue.num_items
    # global-: the shared model alone, when partners serve something else (personalised and/or blended)
    prefixes = ("", "global-") if job.personalize_epochs > 0 or job.blend else ("",)
    totals = {f"{p}{k}": (items,) for p in prefixes for k in ("recommended", "recommended-explore")}
    return [Release("evaluate", "totals", totals, PUBLIC, kind="arrays",
                    what="how often each item was recommended to the partner's evaluation customers",
                    reason=f"exact evaluation counts; {nonprivate}", count=count),
            Release("evaluate", "metrics", {"seconds": None, **{f"{p}{k}": None for p in prefixes
                                                                 for k in RankingTotals.SCALARS}}, PUBLIC,
                    what="sums of ranking metrics (hits, NDCG, ...) over the partner's evaluation customers",
                    reason=f"exact evaluation sums; {nonprivate}", count=count)]


def run(session: Session) -> TaskResult:
    """Rounds of local training (or SecAgg+ rounds with distributed noise), then the final evaluation."""
    job: RecommendJob = session.state["job"]
    catalogue: Catalogue = session.state["catalogue"]
    privacy: PrivacyPlan = session.state["privacy"]
    nodes = session.nodes
    sigma, total_steps = privacy.noise_multiplier, privacy.steps
    config = message_config(session, catalogue, sigma, privacy.popularity_noise_multiplier, job.delta,
                            privacy.eval_noise_multiplier)
    names = {n: p.partner_id for n, p in session.partners.items()}
    sizes = {n: int(p.facts["customers"]) for n, p in session.partners.items()}

    items = ItemParams.init(catalogue.num_items, job.dim, job.seed)
    if privacy.popularity_noise_multiplier:
        released = session.ask("query", "popularity", config={**config, "phase": "popularity"})
        counts = sum(released[n].content["release"]["popularity"].numpy().astype(np.float64) for n in nodes)
        noise_std = math.sqrt(len(nodes)) * privacy.popularity_noise_multiplier * job.popularity_clip
        items = ItemParams(items.embeddings, popularity_bias(counts, noise_std))
    optimizer = ServerOptimizer(job.server_optimizer, job.server_lr, items.as_matrix().shape)
    per_round: list[dict[str, Any]] = []
    local_train_s = 0.0
    enc = None
    if job.distributed:
        enc = recommend_secagg.encoding(job, list(sizes.values()), items.as_matrix().size)
    for rnd in range(1, job.rounds + 1):
        round_start = time.perf_counter()
        if enc is not None:
            items, record = _distributed_round(session, job, config, items, optimizer, rnd, sizes, enc)
        else:
            items, record, seconds = _train_round(session, job, config, items, optimizer, rnd, names, sizes, sigma)
            local_train_s += seconds
        if job.evaluates and job.eval_every and rnd % job.eval_every == 0 and rnd < job.rounds:
            blocks, _ = _evaluate(session, job, privacy, config, items, catalogue, final=False, rnd=rnd)
            m = blocks["federated"]
            record.update({f"hr@{job.k}": m[f"hr@{job.k}"], f"ndcg@{job.k}": m[f"ndcg@{job.k}"]})
        record["seconds"] = round(time.perf_counter() - round_start, 3)
        per_round.append(record)
        progress.report("rounds", rnd, job.rounds)

    blocks: dict[str, dict[str, Any]] = {}
    eval_s = 0.0
    if job.evaluates:
        blocks, eval_s = _evaluate(session, job, privacy, config, items, catalogue, final=True, rnd=job.rounds)
        federated = blocks["federated"]
        per_round[-1].update({f"hr@{job.k}": federated[f"hr@{job.k}"], f"ndcg@{job.k}": federated[f"ndcg@{job.k}"]})
    summary = build_summary(job, catalogue, names=sorted(names.values()), sizes=sorted(sizes.values()),
                            spent=session.spent, sigma=sigma, total_steps=total_steps, blocks=blocks,
                            popularity_sigma=privacy.popularity_noise_multiplier, encoding=enc,
                            per_round=per_round, wall_s=time.perf_counter() - session.started,
                            local_train_s=local_train_s, eval_s=eval_s)
    artifacts = {}
    if session.job.out_dir:
        folder = Path(session.job.out_dir) / MODEL_DIRNAME
        write_model(folder, job, catalogue, items, sigma)
        artifacts["model"] = str(folder)
    return TaskResult(summary, artifacts)


def build_summary(job: RecommendJob, catalogue: Catalogue, *, names: list[str], sizes: list[int],
                  spent: dict[str, float], sigma: float, total_steps: int, blocks: dict[str, dict[str, Any]],
                  popularity_sigma: float,
                  per_round: list[dict[str, Any]], wall_s: float, local_train_s: float,
                  eval_s: float, encoding: Any = None) -> dict[str, Any]:
    """``summary.json``, shaped like the propensity task's (task, privacy, metrics, timing)."""
    privacy: dict[str, Any] = {
        "unit": "customer",
        "private": job.private,
        "epsilon_target": job.epsilon if job.private else None,
        "delta": job.delta,
        "epsilon_spent": {pid: round(spent[pid], 6) for pid in names} if job.private else {pid: None for pid in names},
        "epsilon_spent_max": round(max(spent.values()), 6) if job.private and spent else None,
        "accountant": "rdp",
        "mechanism": _mechanism_text(job),
    }
    privacy["noise_model"] = ("distributed-secagg" if job.distributed else "local") if job.private else None
    if job.private:
        privacy["trust_model"] = noise_model_text(job)
        if encoding is not None:
            privacy["secagg"] = {"honest_partners": job.honest, "max_dropouts": job.max_dropouts,
                                 "noise_shares": encoding.honest, "clipping_range": encoding.clipping_range,
                                 "quantization_range": encoding.quantization, "modulus_range": 2**32,
                                 "grid_step": encoding.step, "sensitivity": round(encoding.sensitivity, 9),
                                 "overflow_probability": encoding.overflow_probability, "tau": encoding.tau,
                                 "sum_noise_std": round(encoding.sum_noise_std, 6)}
        privacy.update({"noise_multiplier": round(sigma, 6), "sample_rate": job.sample_rate, "clip": job.clip,
                        "steps": total_steps, "popularity_share": job.popularity_share,
                        "popularity_noise_multiplier": round(popularity_sigma, 6),
                        "popularity_clip": job.popularity_clip})
    return {
        "rounds": job.rounds,
        "seed": job.seed,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "catalogue": {"items": catalogue.num_items, "sha256": catalogue.fingerprint(),
                      "attribute": catalogue.attribute, "diversity": catalogue.diversity_text(),
                      "exploration": catalogue.exploration_text()},
        "customers": {"total": int(sum(sizes)), "per_partner": sizes},
        "privacy": privacy,
        "metrics": {**blocks, "per_round": per_round},
        # a DP job's partners send no timing (a side channel): only the coordinator's own wall clock
        "timing": {"wall_s": round(wall_s, 3), "local_train_s": None if job.private else round(local_train_s, 3),
                   "eval_s": None if job.private else round(eval_s, 3)},
    }


def write_model(folder: Path, job: RecommendJob, catalogue: Catalogue, items: ItemParams, sigma: float) -> None:
    """The item model a partner serves from: ``items.npz`` (ids, embeddings, biases) + ``model.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "items.npz", item_ids=np.asarray(catalogue.item_ids, dtype=str),
             attributes=np.asarray(catalogue.attribute_strings(), dtype=str),
             embeddings=items.embeddings, bias=items.bias)
    meta = {"kind": "bpr-mf", "job_id": job.job_id, "dim": job.dim, "items": catalogue.num_items,
            "catalogue_sha256": catalogue.fingerprint(), "attribute": catalogue.attribute, "rounds": job.rounds,
            "epsilon": job.epsilon if job.private else None, "delta": job.delta,
            "noise_multiplier": sigma, "explore": job.explore, "k": job.k,
            "personalize_epochs": job.personalize_epochs, "blend": job.blend}
    (folder / "model.json").write_text(json.dumps(meta, indent=2))


def _mechanism_text(job: RecommendJob) -> str:
    """What was actually released, for the summary and the report (no popularity step when it was off)."""
    if not job.private:
        return "none (non-private run)"
    steps = []
    if job.popularity_share > 0:
        steps.append("Gaussian release of clipped item popularity (OpenDP)")
    if job.noise_model == "distributed-secagg":
        steps.append("customer-level clipped full-batch item-table gradients, discrete-Gaussian noise shares summed "
                     "under SecAgg+")
    else:
        steps.append("customer-level clipped, Poisson-subsampled Gaussian DP-SGD on the item table")
    return ", then ".join(steps)

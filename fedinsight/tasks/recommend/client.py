"""The partner side of the federated recommender (``*.recommend`` messages).

What a partner sends, and only this (the task's manifest, :mod:`.server`):

* hello (the framework's): its number of customers (public, as in DP-SGD's sample-rate convention), after
  checking its data against the job's catalogue -- so a broken partner fails before any budget is charged;
* ``query.recommend`` phase ``popularity`` (private jobs that ask for it): one Gaussian release of clipped
  per-item customer counts;
* ``train.recommend``: the change of the *item* table (embeddings + biases, catalogue-shaped) after local
  epochs, and scalar metrics. Under DP the change is the result of customer-level clipped, noised steps
  (:mod:`fedinsight.privacy.sparse_dp`) and only public scalars come with it; without DP, the number of
  customers who touched each item comes too (for item-wise averaging) and the loss;
* ``evaluate.recommend``: under DP, one Gaussian release (OpenDP) of the sums of per-customer ranking metrics of
  the *shared* model (each customer adds a value in [0, 1] to each sum), charged through the same gate as
  training; without DP, exact sums and how often each item was recommended (non-private jobs only).

Customer embeddings stay here, sealed in the partner's vault (AES-GCM under its encryption key, listed for
erasure follow-up), and never enter a reply. Every DP release passes the partner's budget gate first (its
own lifetime cap and the job's epsilon); a deployed partner refuses non-private jobs unless it allows them.
Sampling, shuffles, negatives and initialisation draw from OS entropy (:func:`partner_trainer`); the job's seed
fixes only public things (the shared item table's initialisation, the evaluation protocol's sampled negatives).
The partner holds its own limits whatever a message says: its evaluation minimum (:data:`EVAL_MIN_CUSTOMERS`
or its own higher one) and the largest delta it accepts (every task's rule,
:func:`fedinsight.federation.budget.check_job_delta`: in hello by the ClientApp, and at every spend by its gate).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import numpy as np
from dp_accounting import dp_event
from flwr.app import Array, ArrayRecord, Message, MetricRecord

from fedinsight.core.errors import BudgetExceededError, ConfigError, DataValidationError, Problem
from fedinsight.federation.messages import config_of, reply
from fedinsight.federation.task import Partner, phase_of
from fedinsight.models.alone import Scorer
from fedinsight.models.ranking import (
    Catalogue,
    InteractionSplit,
    RankingTotals,
    evaluate_ranking,
)
from fedinsight.models.recommender import BPRConfig, DPConfig, ItemParams, LocalTrainer
from fedinsight.privacy.ledger import dpsgd_event
from fedinsight.privacy.mechanisms import gaussian
from fedinsight.tasks.recommend.blending import Served, alone_arrays, fit_served, validation_folds
from fedinsight.tasks.recommend.interaction_scan import EnginePairs, engine_pairs
from fedinsight.tasks.recommend.options import EVAL_FIELDS
from fedinsight.tasks.recommend.state import (
    CustomerState,
    customer_state_name,
    load_customer_state,
    save_customer_state,
)

# --- the partner's data as a split --------------------------------------------------------------

def catalogue_from_config(config: dict[str, Any]) -> Catalogue:
    """The job's catalogue, as the coordinator sent it (public: item ids and their genres or category)."""
    ids = config.get("item-ids")
    if not isinstance(ids, list) or not ids:
        raise ConfigError("the job message carries no item catalogue ('item-ids')")
    values = config.get("item-attributes", config.get("item-genres"))
    attribute = str(config.get("item-attribute", "genres")) or None
    catalogue = Catalogue.from_ids([str(i) for i in ids], list(values) if isinstance(values, list) else None,
                                   attribute=attribute)
    expected = config.get("catalogue-sha")
    if expected is not None and catalogue.fingerprint() != expected:
        raise ConfigError("the catalogue in the job message does not match its fingerprint")
    return catalogue


_SPLITS: OrderedDict[tuple[str, str, str], InteractionSplit] = OrderedDict()
_MAX_SPLITS = 64  # Ray actors serve many virtual partners; keep each one's split across rounds


def _pairs(partner: Partner, catalogue: Catalogue) -> EnginePairs:
    """The partner's interactions as ranked pairs, from its engine (:mod:`.interaction_scan`: no table is loaded
    whole); a partner without an interactions table is refused in its own words."""
    if "interactions" not in partner.columns():
        raise DataValidationError(Problem(f"partner {partner.partner_id}",
                                          "this partner has no interactions table; the recommender needs one"))
    return engine_pairs(partner, catalogue)


def partner_split(partner: Partner, config: dict[str, Any]) -> tuple[InteractionSplit, Catalogue]:
    """This partner's leave-latest-one-out split in the job's catalogue (cached per job: the next job reads the
    data view again, so consent changes and erasures take effect)."""
    catalogue = catalogue_from_config(config)
    key = (partner.partner_id, str(config.get("job-id", "")), catalogue.fingerprint())
    if key in _SPLITS:
        _SPLITS.move_to_end(key)
        return _SPLITS[key], catalogue
    split = _pairs(partner, catalogue).split()
    if split.num_customers == 0:
        raise DataValidationError(Problem(f"partner {partner.partner_id}",
                                          "no customer has two or more interactions with catalogue items"))
    _SPLITS[key] = split
    while len(_SPLITS) > _MAX_SPLITS:
        _SPLITS.popitem(last=False)
    return split, catalogue


def partner_validation_splits(partner: Partner, catalogue: Catalogue) -> list[InteractionSplit]:
    """This partner's validation folds: the test items set aside, each customer's next-latest interaction held out,
    then the one before, as many as its customers call for (:func:`.blending.validation_folds`; what it chooses its
    served model on; read once, at the end of a job, by one more scan of the engine)."""
    pairs = _pairs(partner, catalogue)
    first = pairs.split(skip_latest=1)
    return [first] + [pairs.split(skip_latest=s)
                      for s in range(2, validation_folds(first.num_customers) + 1)]


def served_record(served: Served) -> dict[str, object]:
    """The blend as the vault keeps it (for serving): weight, alone kind and lambda, and why."""
    alone = served.alone
    record: dict[str, object] = {"weight": served.weight, "alone": alone.kind if alone else None,
                                 "lambda": alone.lam if alone else None, "note": served.note}
    if served.choice is not None:
        record["validation_customers"] = served.choice.customers
    return record


# --- job settings carried by the messages ---------------------------------------------------------

def bpr_config(config: dict[str, Any]) -> BPRConfig:
    return BPRConfig(
        dim=int(config.get("dim", 32)),
        lr=float(config.get("lr", 0.01)),
        customer_lr=float(config.get("customer-lr", 0.01)),
        reg=float(config.get("reg", 1e-5)),
        customer_reg=float(config.get("customer-reg", 1e-5)),
        batch_customers=int(config.get("batch-customers", 32)),
        dp_lr=float(config.get("dp-lr", 5.0)),
        optimizer="sgd" if is_private(config) else "adam",
    )


def is_private(config: dict[str, Any]) -> bool:
    return math.isfinite(float(config.get("epsilon", math.inf)))


def dp_config(config: dict[str, Any]) -> DPConfig | None:
    if not is_private(config):
        return None
    return DPConfig(noise_multiplier=float(config["noise-multiplier"]), clip=float(config.get("clip", 1.0)),
                    sample_rate=float(config["sample-rate"]))


def partner_trainer(split: InteractionSplit, num_items: int, cfg: BPRConfig,
                    embeddings: np.ndarray | None) -> LocalTrainer:
    """The partner's trainer: no seed, so its Poisson batches, shuffles and negatives come from OS entropy.

    Why nothing from the message seeds it: subsampling amplification (the epsilon a job is charged at
    sample rate q < 1) assumes the coordinator does not know who was in a batch; a seed made of values it
    knows (run seed, round, partner id) would let it replay every batch.
    """
    return LocalTrainer(split, num_items, cfg, customer_embeddings=embeddings)


def _load_or_new_state(partner: Partner, config: dict[str, Any], split: InteractionSplit) -> tuple[str, CustomerState]:
    job = str(config.get("job-id", "job"))
    name = customer_state_name(job)
    if partner.vault.exists(name):
        state = load_customer_state(partner.vault, name)
        if state.customer_ids != split.customer_ids:
            raise ConfigError(f"the customers of this partner changed since job '{job}' started; start a new job")
        return name, state
    cfg = bpr_config(config)
    rng = np.random.default_rng()  # OS entropy
    emb = (rng.standard_normal((split.num_customers, cfg.dim)) * cfg.init_scale).astype(np.float32)
    return name, CustomerState(job, split.customer_ids, emb)


def spend(partner: Partner, config: dict[str, Any], noise_multiplier: float, sample_rate: float, steps: int,
          what: str, *, event: dp_event.DpEvent | None = None, kind: str = "training") -> float:
    """Pass one release through the partner's gate (its own cap, the job's epsilon, and the delta rule every task
    shares, :func:`fedinsight.federation.budget.check_job_delta`); the job's epsilon after."""
    status = partner.gate.spend(str(config.get("job-id", "job")),
                                [event or dpsgd_event(noise_multiplier, sample_rate, steps)],
                                job_epsilon=float(config["epsilon"]), job_delta=float(config["delta"]),
                                kind=kind, description=f"recommender: {what}")
    return status.epsilon_job


# --- handlers ------------------------------------------------------------------------------------

def hello_facts(partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
    """Check the data against the catalogue and the partner's policy; state how many customers it has."""
    partner.gate.allow(is_private(config))
    split, _ = partner_split(partner, config)  # a stated delta was checked by the ClientApp's hello already
    return {"customers": split.num_customers}


def query(msg: Message, partner: Partner) -> Message:
    """``popularity``: the DP popularity release (the hello phase is the framework's)."""
    if phase_of(msg) != "popularity":
        raise ConfigError(f"unknown recommend step '{phase_of(msg)}' (expected popularity)")
    return _popularity(msg, partner)


def popularity_counts(split: InteractionSplit, num_items: int, clip: float) -> np.ndarray:
    """Per item, the customers who touched it, each customer weighted min(1, clip / sqrt(#items)).

    A customer's whole contribution is then a vector of L2 norm <= ``clip``: the sensitivity of the
    Gaussian release is ``clip`` however many items the customer has.
    """
    sizes = np.diff(split.train_indptr)
    weights = np.minimum(1.0, clip / np.sqrt(np.maximum(sizes, 1)))
    return np.bincount(split.train_items, weights=np.repeat(weights, sizes), minlength=num_items)


def _popularity(msg: Message, partner: Partner) -> Message:
    """One Gaussian release (OpenDP sampler) of clipped per-item customer counts; the shared item biases
    start from it, so the shared model knows what is popular before DP-SGD spends the rest of the budget."""
    config = config_of(msg)
    if not is_private(config):
        raise ConfigError("the popularity release belongs to private jobs only")
    split, catalogue = partner_split(partner, config)
    sigma = float(config["pop-noise-multiplier"])
    clip = float(config["pop-clip"])
    name, state = _load_or_new_state(partner, config, split)
    if state.popularity_released:
        raise BudgetExceededError(f"partner {partner.partner_id} already released popularity for this job")
    epsilon = spend(partner, config, sigma, 1.0, 1, "the popularity release")
    release = gaussian(popularity_counts(split, catalogue.num_items, clip), sensitivity=clip, noise_multiplier=sigma)
    state.accountant.step(sigma, 1.0, 1)
    state.popularity_released = True
    save_customer_state(partner.vault, name, state)
    return reply(msg, release=ArrayRecord({"popularity": Array(release.values.astype(np.float32))}),
                 metrics=MetricRecord({"epsilon": epsilon}))


def train(msg: Message, partner: Partner) -> Message:
    """Local epochs from the global item table; reply with the item-table change only."""
    config = config_of(msg)
    split, catalogue = partner_split(partner, config)
    items = ItemParams.from_matrix(msg.content["items"]["items"].numpy())
    if items.num_items != catalogue.num_items:
        raise ConfigError(f"item table has {items.num_items} rows for a catalogue of {catalogue.num_items} items")
    cfg = bpr_config(config)
    dp = dp_config(config)
    epochs = int(config.get("local-epochs", 2))
    name, state = _load_or_new_state(partner, config, split)
    epsilon = None
    if dp is None:
        partner.gate.allow(False)
    else:
        epsilon = spend(partner, config, dp.noise_multiplier, dp.sample_rate, epochs * dp.steps_per_epoch(),
                        f"round {config.get('round', '?')}")
    trainer = partner_trainer(split, catalogue.num_items, cfg, state.embeddings)
    new, stats = trainer.train(items, epochs, dp)
    assert trainer.customer_embeddings is not None
    state.embeddings = trainer.customer_embeddings
    state.rounds += 1
    if dp is not None:
        state.accountant.step(dp.noise_multiplier, dp.sample_rate, stats.steps)
    save_customer_state(partner.vault, name, state)
    arrays = {"delta": Array(new.as_matrix() - items.as_matrix())}
    metrics: dict[str, float | int] = {"steps": stats.steps}
    if dp is None:  # non-private job: statistics of the data may travel (the loss, who touched what, the time)
        metrics["seconds"] = round(stats.seconds, 1)
        arrays["item-customers"] = Array(split.item_customer_counts(catalogue.num_items).astype(np.float32))
        metrics["loss"] = stats.loss
    else:
        metrics["epsilon"] = float(epsilon or 0.0)
    return reply(msg, update=ArrayRecord(arrays), metrics=MetricRecord(metrics))


EVAL_MIN_CUSTOMERS = 50
"""A partner does not evaluate on fewer customers than this (or its own, higher, minimum): no message lowers it."""


def eval_minimum(partner: Partner) -> int:
    """The partner's own evaluation minimum: max(the floor, its ``min-eval-customers`` setting). A job's
    ``eval-min-customers`` is not read at all."""
    return max(EVAL_MIN_CUSTOMERS, int(partner.setting("min-eval-customers", 0)))


def eval_fields(config: dict[str, Any]) -> tuple[str, ...]:
    chosen = str(config.get("eval-metrics", "accuracy"))
    if chosen not in EVAL_FIELDS:
        raise ConfigError(f"unknown eval-metrics '{chosen}' (expected one of {', '.join(EVAL_FIELDS)})")
    return EVAL_FIELDS[chosen]


def evaluate(msg: Message, partner: Partner) -> Message:
    """Fit customer embeddings to the item table, rank; under DP release noised sums of the shared model's
    metrics (:func:`_private_evaluation`), else exact totals (and optionally the personalised model's)."""
    config = config_of(msg)
    split, catalogue = partner_split(partner, config)
    minimum = eval_minimum(partner)
    if split.num_customers < minimum:
        raise ConfigError(
            f"partner {partner.partner_id} has {split.num_customers} customers, fewer than the "
            f"{minimum} an evaluation release needs"
        )
    private = is_private(config)
    sigma = float(config.get("eval-noise-multiplier", 0.0))
    if private and not sigma > 0:
        raise ConfigError("a private job's evaluation needs its noise multiplier ('eval-noise-multiplier')")
    epsilon = None
    if private:  # charged before anything is computed: a refused release computes nothing
        fields = eval_fields(config)
        what = "final evaluation" if config.get("final") else f"evaluation after round {config.get('round', '?')}"
        epsilon = spend(partner, config, sigma, 1.0, 1, what, event=dp_event.GaussianDpEvent(sigma), kind="evaluation")
    items = ItemParams.from_matrix(msg.content["items"]["items"].numpy())
    cfg = bpr_config(config)
    name, state = _load_or_new_state(partner, config, split)
    start = time.perf_counter()
    trainer = partner_trainer(split, catalogue.num_items, replace(cfg, optimizer="adam"), state.embeddings)
    trainer.train(items, int(config.get("fit-epochs", 3)), train_items=False)
    seed, k = int(config.get("seed", 0)), int(config.get("k", 10))
    share = float(config.get("explore", 0.2))

    def rank(scorer: Scorer, exposure: np.ndarray) -> RankingTotals:
        return evaluate_ranking(split, catalogue, scorer, exposure, seed=seed, k=k, share=share)

    shared = rank(lambda rows: trainer.scores(items, rows), items.bias)
    personalize = int(config.get("personalize-epochs", 0))
    final = bool(config.get("final", False))
    results = {"": shared}
    if final or not private:
        # partner-local fine-tuning and the blend with the partner's own alone-model: never leave the partner,
        # cost no budget -- and under DP their metrics are not released either: they depend on every local
        # customer, so no per-customer bound holds
        served_items = trainer.train(items, personalize)[0] if personalize > 0 else items
        blend_on = bool(config.get("blend", True))
        served = fit_served(split, partner_validation_splits(partner, catalogue) if final else None,
                            catalogue.num_items, items, served_items, trainer, cfg, personalize=personalize,
                            eval_seed=seed, blend_on=blend_on)
        if not private and (personalize > 0 or blend_on):
            results = {"": rank(served.scorer(split, catalogue.num_items), served_items.bias), "global-": shared}
        if final:
            assert trainer.customer_embeddings is not None
            state.embeddings = trainer.customer_embeddings
            state.personal_items = served_items.as_matrix() if personalize > 0 else None
            state.blend = served_record(served)
            arrays = alone_arrays(served)
            state.alone_items, state.alone_embeddings = arrays.get("alone_items"), arrays.get("alone_embeddings")
            save_customer_state(partner.vault, name, state)
    # a DP job sends no timing: it grows with the partner's data (its alone-model's fit too), unnoised
    metrics: dict[str, float] = {} if private else {"seconds": round(time.perf_counter() - start, 1)}
    if private:
        release = gaussian([float(getattr(shared, f)) for f in fields], sensitivity=math.sqrt(len(fields)),
                           noise_multiplier=sigma)
        metrics["epsilon"] = float(epsilon or 0.0)
        return reply(msg, release=MetricRecord({f: float(v) for f, v in zip(fields, release.values, strict=True)}),
                     metrics=MetricRecord(metrics))
    arrays: dict[str, Array] = {}
    for prefix, totals in results.items():
        metrics.update({prefix + name: float(getattr(totals, name)) for name in totals.SCALARS})
        arrays[prefix + "recommended"] = Array(totals.recommended.astype(np.float32))
        arrays[prefix + "recommended-explore"] = Array(totals.recommended_explore.astype(np.float32))
    return reply(msg, totals=ArrayRecord(arrays), metrics=MetricRecord(metrics))

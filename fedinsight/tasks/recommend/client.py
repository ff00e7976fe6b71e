"""The partner side of the federated recommender (Flower handlers ``*.recommend``).

What a partner sends, and only this:

* ``query.recommend`` (hello): its partner id and number of customers (public, as in DP-SGD's
  sample-rate convention), after checking its data against the job's catalogue — so a broken partner
  fails before any budget is charged;
* ``train.recommend``: the change of the *item* table (embeddings + biases, catalogue-shaped) after
  local epochs, and scalar metrics. Under DP the change is the result of customer-level clipped,
  noised steps (:mod:`fedinsight.privacy.sparse_dp`) and only public scalars come with it; without DP,
  the number of customers who touched each item comes too (for item-wise averaging) and the loss;
* ``evaluate.recommend``: sums of ranking metrics and how often each item was recommended.

Customer embeddings stay here: they live in a partner-local state file written through
:func:`save_customer_state` / :func:`load_customer_state`, sealed with AES-GCM under the partner's
encryption key (its :class:`~fedinsight.partner.protection.PartnerVault`), and never enter a reply.
The partner also keeps its own Opacus accountant and refuses a
round that would take its customers past the job's epsilon, or past its own ceiling
(``--node-config max-epsilon=E``), whatever the coordinator asks; ``require-dp=true`` makes it refuse
non-private jobs outright.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict

from fedinsight.core.errors import BudgetExceededError, ConfigError, DataValidationError, FedinsightError, Problem
from fedinsight.models.ranking import Catalogue, InteractionSplit, RankingTotals, evaluate_ranking, leave_latest_out
from fedinsight.models.recommender import BPRConfig, DPConfig, ItemParams, LocalTrainer
from fedinsight.partner.clientapp import app
from fedinsight.partner.protection import PartnerVault
from fedinsight.partner.view import load_partner_data, partner_data_path, partner_id
from fedinsight.privacy.ledger import compose_epsilon
from fedinsight.privacy.sparse_dp import CustomerLevelAccountant

STATE_DIRNAME = ".fedinsight-state"
ERROR_CODE = 3001  # Flower error code of a fedinsight error raised on the partner


# --- customer state (partner-local, never sent) ---------------------------------------------------

@dataclass
class CustomerState:
    """A partner's private side of one recommender job."""

    job_id: str
    customer_ids: tuple[str, ...]
    embeddings: np.ndarray  # (customers, dim) float32
    accountant: CustomerLevelAccountant = field(default_factory=CustomerLevelAccountant)
    rounds: int = 0
    personal_items: np.ndarray | None = None  # (items, dim + 1) partner-local fine-tuned item table
    popularity_released: bool = False


def customer_state_path(folder: str | Path, job_id: str) -> Path:
    """Where a job's (encrypted) customer state lives inside a partner's state folder."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", job_id)
    return Path(folder) / f"{safe}.customers.enc"


def save_customer_state(path: str | Path, state: CustomerState, vault: PartnerVault) -> None:
    """Seal the state with the partner's encryption key (AES-GCM, bound to the file name) and write it
    atomically (mode 0600); the vault's erasure register lists it as an ``embeddings`` artifact, so
    ``partner forget`` knows which files predate an erasure request."""
    from fedinsight.privacy.encryption import arrays_to_bytes, write_encrypted

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"job_id": state.job_id, "rounds": state.rounds, "accountant": state.accountant.history,
            "popularity_released": state.popularity_released}
    arrays: dict[str, np.ndarray] = {
        "customer_ids": np.asarray(state.customer_ids, dtype=str),
        "embeddings": np.asarray(state.embeddings, dtype=np.float32),
        "meta": np.asarray(json.dumps(meta)),
    }
    if state.personal_items is not None:
        arrays["personal_items"] = np.asarray(state.personal_items, dtype=np.float32)
    write_encrypted(path, arrays_to_bytes(arrays), vault.ring)
    vault.register.register_artifact(path.name, "embeddings", str(path), job_id=state.job_id,
                                     purpose="recommendation")


def load_customer_state(path: str | Path, vault: PartnerVault) -> CustomerState:
    """Open a state written by :func:`save_customer_state`; a modified file raises TamperedDataError."""
    from fedinsight.privacy.encryption import arrays_from_bytes, read_encrypted

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no customer state at {path}: train the recommender on this partner first")
    data = arrays_from_bytes(read_encrypted(path, vault.ring))
    meta = json.loads(str(data["meta"]))
    personal = data.get("personal_items")
    return CustomerState(
        job_id=str(meta["job_id"]),
        customer_ids=tuple(str(c) for c in data["customer_ids"]),
        embeddings=np.array(data["embeddings"], dtype=np.float32),
        accountant=CustomerLevelAccountant([tuple(h) for h in meta["accountant"]]),  # type: ignore[misc]
        rounds=int(meta["rounds"]),
        popularity_released=bool(meta.get("popularity_released", False)),
        personal_items=None if personal is None else np.array(personal, dtype=np.float32),
    )


def vault_for(context: Context, config: dict[str, object]) -> PartnerVault:
    """The partner's encrypted storage (its protection policy's key ring and erasure register)."""
    from fedinsight.partner.view import partner_vault

    return partner_vault(context, config)


def state_folder(context: Context, config: dict[str, object]) -> Path:
    """``node_config['state-dir']`` if the partner set one, else a hidden folder next to its data."""
    if "state-dir" in context.node_config:
        return Path(str(context.node_config["state-dir"]))
    return partner_data_path(context, config) / STATE_DIRNAME


# --- the partner's data as a split --------------------------------------------------------------

def catalogue_from_config(config: dict[str, object]) -> Catalogue:
    """The job's catalogue, as the coordinator sent it (public: item ids and genres)."""
    ids = config.get("item-ids")
    if not isinstance(ids, list) or not ids:
        raise ConfigError("the job message carries no item catalogue ('item-ids')")
    genres = config.get("item-genres")
    catalogue = Catalogue.from_ids([str(i) for i in ids], list(genres) if isinstance(genres, list) else None)
    expected = config.get("catalogue-sha")
    if expected is not None and catalogue.fingerprint() != expected:
        raise ConfigError("the catalogue in the job message does not match its fingerprint")
    return catalogue


_SPLITS: OrderedDict[tuple[str, str], InteractionSplit] = OrderedDict()
_MAX_SPLITS = 64  # Ray actors serve many virtual partners; keep each one's split across rounds


def partner_split(context: Context, config: dict[str, object]) -> tuple[InteractionSplit, Catalogue]:
    """This partner's leave-latest-one-out split in the job's catalogue (cached per process)."""
    catalogue = catalogue_from_config(config)
    path = str(partner_data_path(context, config).resolve())
    key = (path, catalogue.fingerprint())
    if key in _SPLITS:
        _SPLITS.move_to_end(key)
        return _SPLITS[key], catalogue
    data = load_partner_data(context, config)
    if data.interactions is None:
        raise DataValidationError(Problem(path, "this partner has no interactions table; the recommender needs one"))
    split = leave_latest_out(data.interactions, catalogue)  # type: ignore[arg-type]
    if split.num_customers == 0:
        raise DataValidationError(Problem(path, "no customer has two or more interactions with catalogue items"))
    _SPLITS[key] = split
    while len(_SPLITS) > _MAX_SPLITS:
        _SPLITS.popitem(last=False)
    return split, catalogue


# --- job settings carried by the messages ---------------------------------------------------------

def bpr_config(config: dict[str, object]) -> BPRConfig:
    return BPRConfig(
        dim=int(config.get("dim", 32)),  # type: ignore[arg-type]
        lr=float(config.get("lr", 0.01)),  # type: ignore[arg-type]
        customer_lr=float(config.get("customer-lr", 0.01)),  # type: ignore[arg-type]
        reg=float(config.get("reg", 1e-5)),  # type: ignore[arg-type]
        customer_reg=float(config.get("customer-reg", 1e-5)),  # type: ignore[arg-type]
        batch_customers=int(config.get("batch-customers", 32)),  # type: ignore[arg-type]
        dp_lr=float(config.get("dp-lr", 5.0)),  # type: ignore[arg-type]
        optimizer="sgd" if is_private(config) else "adam",
    )


def is_private(config: dict[str, object]) -> bool:
    return math.isfinite(float(config.get("epsilon", math.inf)))  # type: ignore[arg-type]


def dp_config(config: dict[str, object]) -> DPConfig | None:
    if not is_private(config):
        return None
    return DPConfig(
        noise_multiplier=float(config["noise-multiplier"]),  # type: ignore[arg-type]
        clip=float(config.get("clip", 1.0)),  # type: ignore[arg-type]
        sample_rate=float(config["sample-rate"]),  # type: ignore[arg-type]
    )


def _round_seed(config: dict[str, object], context: Context, salt: int) -> int:
    pid = partner_id(context)
    seq = np.random.SeedSequence([int(config.get("seed", 0)), int(config.get("round", 0)), salt,  # type: ignore[arg-type]
                                  *[ord(ch) for ch in pid]])
    return int(seq.generate_state(1)[0])


def _load_or_new_state(context: Context, config: dict[str, object],
                       split: InteractionSplit) -> tuple[Path, CustomerState]:
    job = str(config.get("job-id", "job"))
    path = customer_state_path(state_folder(context, config), job)
    if path.is_file():
        state = load_customer_state(path, vault_for(context, config))
        if state.customer_ids != split.customer_ids:
            raise ConfigError(f"the customers of this partner changed since job '{job}' started; start a new job")
        return path, state
    cfg = bpr_config(config)
    rng = np.random.default_rng(_round_seed(config, context, 1))
    emb = (rng.standard_normal((split.num_customers, cfg.dim)) * cfg.init_scale).astype(np.float32)
    return path, CustomerState(job, split.customer_ids, emb)


def _config(msg: Message) -> dict[str, object]:
    return dict(msg.content["config"]) if "config" in msg.content else {}


def _error_reply(msg: Message, exc: FedinsightError) -> Message:
    return Message(Error(code=ERROR_CODE, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)


# --- handlers ------------------------------------------------------------------------------------

@app.query("recommend")
def query(msg: Message, context: Context) -> Message:
    """``op=hello`` (default): check the data, say who we are; ``op=popularity``: the DP popularity release."""
    try:
        if str(_config(msg).get("op", "hello")) == "popularity":
            return _popularity(msg, context)
        return _hello(msg, context)
    except FedinsightError as exc:
        return _error_reply(msg, exc)


hello = query  # the name the tests and docs use for the handshake


def _hello(msg: Message, context: Context) -> Message:
    config = _config(msg)
    split, _ = partner_split(context, config)
    if not is_private(config) and bool(context.node_config.get("require-dp", False)):
        raise BudgetExceededError("this partner only takes part in differentially private jobs (require-dp)")
    info = ConfigRecord({"partner-id": partner_id(context), "customers": split.num_customers})
    return Message(RecordDict({"info": info}), reply_to=msg)


def _check_budget(context: Context, config: dict[str, object], state: CustomerState, noise_multiplier: float,
                  sample_rate: float, steps: int, what: str) -> None:
    """Refuse a release that would take this partner's customers past the job's (or its own) epsilon."""
    delta = float(config["delta"])  # type: ignore[arg-type]
    target = float(config["epsilon"])  # type: ignore[arg-type]
    planned = CustomerLevelAccountant(list(state.accountant.history))
    planned.step(noise_multiplier, sample_rate, steps)
    after = compose_epsilon(planned.events(), delta)
    cap = context.node_config.get("max-epsilon")  # the partner's own ceiling, whatever the job says
    if cap is not None:
        target = min(target, float(cap))  # type: ignore[arg-type]
    if after > target * (1 + 1e-6):
        raise BudgetExceededError(
            f"partner {partner_id(context)}: {what} would take its customers to epsilon {after:.3f} "
            f"> the allowed {target:g}; refused"
        )


def popularity_counts(split: InteractionSplit, num_items: int, clip: float) -> np.ndarray:
    """Per item, the customers who touched it, each customer weighted min(1, clip / sqrt(#items)).

    A customer's whole contribution is then a vector of L2 norm <= ``clip``: the sensitivity of the
    Gaussian release is ``clip`` however many items the customer has.
    """
    sizes = np.diff(split.train_indptr)
    weights = np.minimum(1.0, clip / np.sqrt(np.maximum(sizes, 1)))
    return np.bincount(split.train_items, weights=np.repeat(weights, sizes), minlength=num_items)


def _popularity(msg: Message, context: Context) -> Message:
    """One Gaussian release (OpenDP sampler) of clipped per-item customer counts; the shared item biases
    start from it, so the shared model knows what is popular before DP-SGD spends the rest of the budget."""
    from fedinsight.privacy.mechanisms import gaussian

    config = _config(msg)
    if not is_private(config):
        raise ConfigError("the popularity release belongs to private jobs only")
    split, catalogue = partner_split(context, config)
    sigma = float(config["pop-noise-multiplier"])  # type: ignore[arg-type]
    clip = float(config["pop-clip"])  # type: ignore[arg-type]
    path, state = _load_or_new_state(context, config, split)
    if state.popularity_released:
        raise BudgetExceededError(f"partner {partner_id(context)} already released popularity for this job")
    _check_budget(context, config, state, sigma, 1.0, 1, "the popularity release")
    release = gaussian(popularity_counts(split, catalogue.num_items, clip), sensitivity=clip, noise_multiplier=sigma)
    state.accountant.step(sigma, 1.0, 1)
    state.popularity_released = True
    save_customer_state(path, state, vault_for(context, config))
    metrics = MetricRecord({"epsilon": state.accountant.epsilon(float(config["delta"]))})  # type: ignore[arg-type]
    arrays = ArrayRecord({"popularity": Array(release.values.astype(np.float32))})
    return Message(RecordDict({"release": arrays, "metrics": metrics}), reply_to=msg)


@app.train("recommend")
def train(msg: Message, context: Context) -> Message:
    """Local epochs from the global item table; reply with the item-table change only."""
    try:
        return _train(msg, context)
    except FedinsightError as exc:
        return _error_reply(msg, exc)


def _train(msg: Message, context: Context) -> Message:
    config = _config(msg)
    split, catalogue = partner_split(context, config)
    items = ItemParams.from_matrix(msg.content["items"]["items"].numpy())
    if items.num_items != catalogue.num_items:
        raise ConfigError(f"item table has {items.num_items} rows for a catalogue of {catalogue.num_items} items")
    cfg = bpr_config(config)
    dp = dp_config(config)
    epochs = int(config.get("local-epochs", 2))  # type: ignore[arg-type]
    path, state = _load_or_new_state(context, config, split)
    if dp is not None:
        _check_budget(context, config, state, dp.noise_multiplier, dp.sample_rate,
                      epochs * dp.steps_per_epoch(), "this round")
    trainer = LocalTrainer(split, catalogue.num_items, cfg, seed=_round_seed(config, context, 2),
                           customer_embeddings=state.embeddings)
    new, stats = trainer.train(items, epochs, dp)
    assert trainer.customer_embeddings is not None
    state.embeddings = trainer.customer_embeddings
    state.rounds += 1
    if dp is not None:
        state.accountant.step(dp.noise_multiplier, dp.sample_rate, stats.steps)
    save_customer_state(path, state, vault_for(context, config))
    arrays = {"delta": Array(new.as_matrix() - items.as_matrix())}
    metrics: dict[str, float | int] = {"customers": split.num_customers, "steps": stats.steps,
                                       "seconds": stats.seconds}
    if dp is None:  # non-private job: statistics of the data may travel (the loss, who touched what)
        arrays["item-customers"] = Array(split.item_customer_counts(catalogue.num_items).astype(np.float32))
        metrics["loss"] = stats.loss
    else:
        metrics["epsilon"] = state.accountant.epsilon(float(config["delta"]))  # type: ignore[arg-type]
    return Message(RecordDict({"update": ArrayRecord(arrays), "metrics": MetricRecord(metrics)}), reply_to=msg)


@app.evaluate("recommend")
def evaluate(msg: Message, context: Context) -> Message:
    """Fit customer embeddings to the final item table (and optionally personalise it), then rank."""
    try:
        return _evaluate(msg, context)
    except FedinsightError as exc:
        return _error_reply(msg, exc)


def _evaluate(msg: Message, context: Context) -> Message:
    config = _config(msg)
    split, catalogue = partner_split(context, config)
    minimum = int(config.get("eval-min-customers", 50))  # type: ignore[arg-type]
    if split.num_customers < minimum:
        raise ConfigError(
            f"partner {partner_id(context)} has {split.num_customers} customers, fewer than the "
            f"{minimum} an evaluation release needs"
        )
    items = ItemParams.from_matrix(msg.content["items"]["items"].numpy())
    cfg = bpr_config(config)
    path, state = _load_or_new_state(context, config, split)
    start = time.perf_counter()
    trainer = LocalTrainer(split, catalogue.num_items, replace(cfg, optimizer="adam"),
                           seed=_round_seed(config, context, 3), customer_embeddings=state.embeddings)
    trainer.train(items, int(config.get("fit-epochs", 3)), train_items=False)  # type: ignore[arg-type]
    seed, k = int(config.get("seed", 0)), int(config.get("k", 10))  # type: ignore[arg-type]
    share = float(config.get("explore", 0.2))  # type: ignore[arg-type]

    def rank(served: ItemParams) -> RankingTotals:
        return evaluate_ranking(split, catalogue, lambda rows: trainer.scores(served, rows), served.bias,
                                seed=seed, k=k, share=share,
                                diversity_features=None if catalogue.genres.shape[1] else served.embeddings)

    results = {"": rank(items)}
    personalize = int(config.get("personalize-epochs", 0))  # type: ignore[arg-type]
    served = items
    if personalize > 0:  # partner-local fine-tuning: never leaves the partner, costs no budget
        served, _ = trainer.train(items, personalize)
        results = {"": rank(served), "global-": results[""]}
    if bool(config.get("final", False)):
        assert trainer.customer_embeddings is not None
        state.embeddings = trainer.customer_embeddings
        state.personal_items = served.as_matrix() if personalize > 0 else None
        save_customer_state(path, state, vault_for(context, config))
    metrics: dict[str, float] = {"seconds": time.perf_counter() - start}
    arrays: dict[str, Array] = {}
    for prefix, totals in results.items():
        metrics.update({prefix + name: float(getattr(totals, name)) for name in totals.SCALARS})
        arrays[prefix + "recommended"] = Array(totals.recommended.astype(np.float32))
        arrays[prefix + "recommended-explore"] = Array(totals.recommended_explore.astype(np.float32))
    return Message(RecordDict({"totals": ArrayRecord(arrays), "metrics": MetricRecord(metrics)}), reply_to=msg)


# --- partner-side serving ------------------------------------------------------------------------

@dataclass(frozen=True)
class Recommendation:
    """One recommended item for one customer."""

    rank: int
    item_id: str
    score: float
    exploration: bool  # filled by the exploration share (outside the customer's usual taste)
    title: str | None = None
    genres: str = ""


@dataclass(frozen=True)
class ItemModel:
    """The item model a coordinator wrote (``<out>/model``): public, the same for every partner."""

    job_id: str
    item_ids: tuple[str, ...]
    genres: tuple[str, ...]
    items: ItemParams
    meta: dict[str, object]

    @classmethod
    def load(cls, folder: str | Path) -> ItemModel:
        folder = Path(folder)
        if not (folder / "items.npz").is_file() or not (folder / "model.json").is_file():
            # accept the run's output folder too
            if (folder / "model" / "items.npz").is_file():
                folder = folder / "model"
            else:
                raise ConfigError(f"{folder} is not a recommender model folder (expected items.npz and model.json)")
        meta = json.loads((folder / "model.json").read_text())
        with np.load(folder / "items.npz", allow_pickle=False) as data:
            items = ItemParams(np.array(data["embeddings"], dtype=np.float32), np.array(data["bias"], dtype=np.float32))
            ids = tuple(str(i) for i in data["item_ids"])
            genres = tuple(str(g) for g in data["genres"])
        return cls(str(meta["job_id"]), ids, genres, items, meta)


def recommend_items(model_dir: str | Path, partner_data: str | Path, customer_id: str, *, k: int = 10,
                    explore: float | None = None, state_dir: str | Path | None = None) -> list[Recommendation]:
    """Top-``k`` items for one of this partner's customers, with scores; runs on the partner only.

    Needs the partner's own data folder (to exclude what the customer already has) and the customer
    state the partner kept from training (``<partner-data>/.fedinsight-state`` unless ``state_dir``).
    ``explore`` (default: the job's share) reserves that share of the slots for items outside the
    customer's usual taste. Raises :class:`UnknownCustomerError` for a customer this partner cannot serve.
    """
    from fedinsight.core.errors import UnknownCustomerError
    from fedinsight.data.federation import load_partner_folder
    from fedinsight.models.ranking import exploration_mask, explore_slots, rerank_with_exploration
    from fedinsight.partner.protection import find_policy, load_protected
    from fedinsight.privacy.tokenize import Tokenizer

    if k < 1:
        raise ConfigError(f"--k must be at least 1 (got {k})")
    model = ItemModel.load(model_dir)
    share = float(model.meta.get("explore", 0.2)) if explore is None else float(explore)  # type: ignore[arg-type]
    partners = load_partner_folder(partner_data)
    if len(partners) != 1:
        raise ConfigError(f"{partner_data} holds {len(partners)} partners' data; point --partner-data at one partner")
    # Training saw the partner's data through its protection pipeline (tokenized ids, consent filter):
    # serve the same view, and look the requested customer up by its token under the partner's key.
    policy = find_policy(partner_data)
    data = load_protected(partner_data, policy).for_purpose("recommendation")
    folder = Path(state_dir) if state_dir is not None else Path(partner_data) / STATE_DIRNAME
    state = load_customer_state(customer_state_path(folder, model.job_id), PartnerVault(policy))
    raw_id = str(customer_id)
    cid = Tokenizer(policy.tokenization_ring()).token(raw_id)
    if cid not in state.customer_ids:
        known = data.customers is not None and cid in set(data.customers["customer_id"].astype(str))  # type: ignore[index]
        hint = ("it has fewer than two interactions, so the model has no embedding for it" if known
                else "it is not in this partner's customers table")
        raise UnknownCustomerError(f"customer '{raw_id}' cannot be served by this partner: {hint}")
    items = model.items if state.personal_items is None else ItemParams.from_matrix(state.personal_items)
    if len(model.item_ids) < k + 1:
        raise ConfigError(f"--k {k} is larger than the catalogue allows ({len(model.item_ids)} items)")
    catalogue = Catalogue.from_ids(model.item_ids, list(model.genres))
    index = catalogue.index()
    history = np.array([], dtype=np.int64)
    if data.interactions is not None:
        frame = data.interactions
        mine = frame.loc[frame["customer_id"].astype(str) == cid, "item_id"].astype(str)  # type: ignore[index]
        history = np.array(sorted({index[i] for i in mine if i in index}), dtype=np.int64)
    scores = state.embeddings[state.customer_ids.index(cid)] @ items.embeddings.T + items.bias
    pool = np.setdiff1d(np.arange(catalogue.num_items), history)
    eligible = exploration_mask(catalogue.genres, items.bias, history)
    ranked = rerank_with_exploration(scores[pool], pool, eligible, k, share)
    exploring = np.zeros(len(ranked), dtype=bool)
    e = explore_slots(k, share)
    if e:
        exploring[k - e:] = eligible[ranked[k - e:]]
    titles: dict[str, str] = {}
    if data.items is not None and "title" in data.items.columns:  # type: ignore[union-attr]
        titles = dict(zip(data.items["item_id"].astype(str), data.items["title"].astype(str), strict=False))  # type: ignore[index]
    genres = catalogue.genre_strings()
    return [
        Recommendation(rank=r + 1, item_id=catalogue.item_ids[i], score=float(scores[i]),
                       exploration=bool(exploring[r]), title=titles.get(catalogue.item_ids[i]), genres=genres[i])
        for r, i in enumerate(ranked)
    ]

"""The partner's recommender handlers through the partner's ClientApp (no Ray): what a reply may and may not
contain, and what the partner refuses whatever the coordinator sends."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

import fedinsight.tasks.recommend.client as client
from fedinsight.data.federation import write_partner_folder
from fedinsight.data.partition import split_partner_tables
from fedinsight.models.ranking import Catalogue
from fedinsight.models.recommender import ItemParams
from fedinsight.partner.clientapp import app
from fedinsight.partner.policy import find_policy
from fedinsight.partner.side import PartnerSide
from fedinsight.partner.vault import PartnerVault
from fedinsight.tasks.recommend.options import RecommendOptions
from fedinsight.tasks.recommend.server import catalogue_config


@pytest.fixture(scope="module")
def partner_root(movielens, tmp_path_factory):
    inter, users, items = movielens
    ids = users["customer_id"].iloc[:120].to_numpy()
    inter = inter.loc[inter["customer_id"].isin(ids)]
    parts = split_partner_tables({"customers": users.iloc[:120], "interactions": inter, "items": items},
                                 ids, np.arange(120) % 2)
    root = tmp_path_factory.mktemp("rec-client") / "partners"
    write_partner_folder(parts, root)
    return root, Catalogue.from_items(items)


@pytest.fixture(autouse=True)
def task_identity():
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def _config(catalogue: Catalogue, root, *, epsilon: float, sigma: float = 2.0, **extra) -> dict:
    """What the coordinator sends with every recommend message (its options, the job, the catalogue)."""
    options = RecommendOptions(epsilon=epsilon, delta=1e-3, dim=8, catalogue_path="unused")
    return {**options.to_run_config(), "task": "recommend", "job-id": "job-1", "data-root": str(root),
            "noise-multiplier": sigma, "pop-noise-multiplier": 0.0, "pop-clip": options.popularity_clip,
            **catalogue_config(catalogue), **extra}


def _state(root, job: str):
    vault = PartnerVault(find_policy(root / "partner-0"))
    name = client.customer_state_name(job)
    return client.load_customer_state(vault, name) if vault.exists(name) else None


def _msg(kind: str, config: dict, items: ItemParams | None = None) -> Message:
    records = {"config": ConfigRecord(config)}
    if items is not None:
        records["items"] = ArrayRecord({"items": Array(items.as_matrix())})
    return Message(RecordDict(records), dst_node_id=1, message_type=kind)


def _context(**node) -> Context:
    return Context(run_id=1, node_id=1, node_config={"partition-id": 0, **node}, state=RecordDict(), run_config={})


def _deployed(root, **node) -> Context:
    """A partner started the way `partner start` starts it: its own data path, id, ledger and settings."""
    return _context(**{"data-path": str(root / "partner-0"), "partner-id": "partner-0",
                       "ledger-url": f"sqlite:///{root / 'partner-0-ledger.db'}", **node})


def test_dp_train_reply_holds_only_the_item_table_change_and_public_scalars(partner_root):
    root, catalogue = partner_root
    items = ItemParams.init(catalogue.num_items, 8, seed=0)
    config = _config(catalogue, root, epsilon=8.0, round=1)
    reply = app(_msg("train.recommend", config, items), _context())
    assert not reply.has_error(), reply.error
    assert set(reply.content.array_records) == {"update"}
    assert set(reply.content["update"]) == {"delta"}
    assert reply.content["update"]["delta"].numpy().shape == (catalogue.num_items, 9)
    assert set(reply.content["metrics"]) == {"steps", "epsilon"}  # no timing in a DP job (a side channel)
    assert 0 < reply.content["metrics"]["epsilon"] <= 8.0
    # the customer embeddings stayed on the partner, sealed in its vault, and are not in the reply
    state = _state(root, "job-1")
    assert state.embeddings.shape == (60, 8) and state.rounds == 1
    delta = reply.content["update"]["delta"].numpy()
    for row in state.embeddings:
        assert not np.isclose(delta[:, :8], row, atol=1e-6).all(axis=1).any()


def test_popularity_release_is_catalogue_shaped_noisy_accounted_and_once_per_job(partner_root):
    root, catalogue = partner_root
    config = _config(catalogue, root, epsilon=8.0, phase="popularity",
                     **{"job-id": "job-pop", "pop-noise-multiplier": 3.0})
    reply = app(_msg("query.recommend", config), _context())
    assert not reply.has_error(), reply.error
    released = reply.content["release"]["popularity"].numpy()
    assert released.shape == (catalogue.num_items,)
    split, _ = client.partner_split(PartnerSide("recommendation", _context(), config), config)
    exact = client.popularity_counts(split, catalogue.num_items, clip=5.0)
    assert float(np.std(released - exact)) == pytest.approx(3.0 * 5.0, rel=0.1)  # sigma x clip on every item
    assert 0 < reply.content["metrics"]["epsilon"] < 8.0
    again = app(_msg("query.recommend", config), _context())
    assert again.has_error() and "already released" in again.error.reason


def test_popularity_counts_bound_each_customers_contribution():
    from fedinsight.models.ranking import InteractionSplit

    split = InteractionSplit(("a", "b"), np.array([0, 100, 102]), np.concatenate([np.arange(100), [0, 1]]),
                             np.array([0, 0]))
    counts = client.popularity_counts(split, 100, clip=5.0)
    assert counts[0] == pytest.approx(0.5 + 1.0)  # a's 100 items weigh 5 / sqrt(100) each, b's two weigh 1
    assert np.linalg.norm(counts - client.popularity_counts(
        InteractionSplit(("b",), np.array([0, 2]), np.array([0, 1]), np.array([0])), 100, clip=5.0)) <= 5.0 + 1e-9


def test_non_private_train_reply_adds_item_counts_and_loss(partner_root):
    root, catalogue = partner_root
    config = _config(catalogue, root, epsilon=math.inf, round=1, **{"job-id": "job-np"})
    reply = app(_msg("train.recommend", config, ItemParams.init(catalogue.num_items, 8, 0)), _context())
    assert set(reply.content["update"]) == {"delta", "item-customers"}
    assert reply.content["update"]["item-customers"].numpy().shape == (catalogue.num_items,)
    assert "loss" in reply.content["metrics"] and "epsilon" not in reply.content["metrics"]


def test_partner_refuses_a_round_past_the_jobs_epsilon_whatever_the_coordinator_says(partner_root):
    root, catalogue = partner_root
    # a coordinator that asks for far too little noise for epsilon 1
    config = _config(catalogue, root, epsilon=1.0, sigma=0.3, round=1, **{"job-id": "job-greedy"})
    reply = app(_msg("train.recommend", config, ItemParams.init(catalogue.num_items, 8, 0)), _context())
    assert reply.has_error()
    assert reply.error.reason.startswith("BudgetExceededError:")
    assert "the 1 it was charged for" in reply.error.reason
    assert _state(root, "job-greedy") is None  # refused before anything was trained or stored


def test_partner_ceiling_caps_what_a_job_may_spend(partner_root):
    root, catalogue = partner_root
    config = _config(catalogue, root, epsilon=8.0, round=1, **{"job-id": "job-capped"})
    msg = _msg("train.recommend", config, ItemParams.init(catalogue.num_items, 8, 0))
    refused = app(msg, _deployed(root, epsilon=0.5))
    assert refused.has_error() and "its own cap 0.5" in refused.error.reason
    # the old spelling of the cap is still read, as partners started before the rename pass it
    assert "its own cap 0.5" in app(msg, _deployed(root, **{"max-epsilon": 0.5})).error.reason
    assert not app(msg, _deployed(root, epsilon=8.0)).has_error()


def test_require_dp_partner_refuses_a_non_private_job_at_hello(partner_root):
    root, catalogue = partner_root
    config = _config(catalogue, root, epsilon=math.inf, phase="hello")
    ok = app(_msg("query.recommend", config), _context())
    assert dict(ok.content["partner"]) == {"partner-id": "partner-0"}
    assert dict(ok.content["facts"]) == {"customers": 60}
    refused = app(_msg("query.recommend", config), _context(**{"require-dp": True}))
    assert refused.has_error() and "require-dp" in refused.error.reason
    deployed = app(_msg("query.recommend", config), _deployed(root))  # a deployed partner requires DP by default
    assert deployed.has_error() and "require-dp" in deployed.error.reason
    assert not app(_msg("query.recommend", config), _deployed(root, **{"require-dp": False})).has_error()


def test_evaluation_minimum_is_the_partners_and_never_lowered_by_a_job(partner_root):
    root, catalogue = partner_root
    items = ItemParams.init(catalogue.num_items, 8, 0)
    lowering = _config(catalogue, root, epsilon=math.inf, **{"eval-min-customers": 1})  # a job's word is ignored
    reply = app(_msg("evaluate.recommend", lowering, items), _context(**{"min-eval-customers": 100}))
    assert reply.has_error() and "fewer than the 100" in reply.error.reason
    assert not app(_msg("evaluate.recommend", lowering, items), _context()).has_error()  # 60 >= the floor of 50


def test_a_wrong_catalogue_is_refused(partner_root):
    root, catalogue = partner_root
    config = _config(catalogue, root, epsilon=math.inf, phase="hello", **{"catalogue-sha": "0" * 64})
    reply = app(_msg("query.recommend", config), _context())
    assert reply.has_error() and "fingerprint" in reply.error.reason


def test_customer_state_is_ciphertext_at_rest_and_tampering_is_detected(partner_root, tmp_path):
    from fedinsight.core.errors import TamperedDataError

    root, _catalogue = partner_root
    vault = PartnerVault(find_policy(root / "partner-1"))
    rng = np.random.default_rng(3)
    embeddings = rng.standard_normal((5, 8)).astype(np.float32)
    # ids long enough that random ciphertext cannot contain one by chance (a 2-byte id such as "c0" turns up
    # in about 1 % of blobs this size)
    customer_ids = tuple(f"private-customer-{i:04d}" for i in range(5))
    state = client.CustomerState("job-enc", customer_ids, embeddings)
    name = client.customer_state_name("job-enc")
    path = client.save_customer_state(vault, name, state)
    blob = path.read_bytes()
    assert blob.startswith(b"FDIENC1\n")
    # no embedding row, no two adjacent floats of one, and no single value widened to float64 appears in the
    # file's bytes. Every pattern is 8 bytes or more: random ciphertext of ~1.7 kB holds a given 8-byte pattern
    # with probability ~1e-16 (a single 4-byte float32 would turn up in 40 x 1.7e3 / 2^32 ~ 1.6e-5 of runs)
    for row in embeddings:
        assert row.tobytes() not in blob
        assert not any(row[i:i + 2].tobytes() in blob for i in range(len(row) - 1))
    assert not any(np.float64(value).tobytes() in blob for value in embeddings.ravel())
    assert b"customer_ids" not in blob
    assert not any(customer_id.encode() in blob for customer_id in customer_ids)
    assert np.array_equal(client.load_customer_state(vault, name).embeddings, embeddings)
    tampered = bytearray(blob)
    tampered[len(tampered) // 2] ^= 0x01
    path.write_bytes(bytes(tampered))
    with pytest.raises(TamperedDataError):
        client.load_customer_state(vault, name)


def test_nothing_the_coordinator_sends_determines_a_partners_batches(partner_root, monkeypatch):
    """Two identical train messages (same run seed, round, job and partner): the partner draws different Poisson
    batches, so a coordinator cannot replay them (subsampling amplification assumes it cannot)."""
    drawn: list[tuple[object, list[np.ndarray]]] = []

    class Recording(client.LocalTrainer):
        def _batches(self, epochs, dp):
            batches = super()._batches(epochs, dp)
            drawn.append((self.seed, batches))
            return batches

    monkeypatch.setattr(client, "LocalTrainer", Recording)
    root, catalogue = partner_root
    config = _config(catalogue, root, epsilon=8.0, round=1, seed=0, **{"job-id": "job-batches", "sample-rate": 0.5})
    items = ItemParams.init(catalogue.num_items, 8, seed=0)
    for _ in range(2):
        reply = app(_msg("train.recommend", config, items), _context())
        assert not reply.has_error(), reply.error
    (seed_a, first), (seed_b, second) = drawn
    assert seed_a is None and seed_b is None  # no value of the message seeds the partner's generator
    assert len(first) == len(second) == 2  # 1 local epoch at q = 0.5
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    # what a coordinator could compute from what it knows: the trainer seeded with the run seed or the round
    split, _ = client.partner_split(PartnerSide("recommendation", _context(), config), config)
    dp = client.dp_config(config)
    for guess in (0, 1):
        guessed = client.LocalTrainer(split, catalogue.num_items, client.bpr_config(config), seed=guess)
        replayed = guessed._batches(1, dp)
        assert any(not np.array_equal(a, b) for a, b in zip(first, replayed, strict=True))


def test_partner_refuses_a_delta_above_one_over_ten_times_its_customers(partner_root):
    root, catalogue = partner_root  # partner-0 has 60 customers: it accepts delta <= 1/600
    too_big = _config(catalogue, root, epsilon=8.0, phase="hello", delta=1e-2)
    reply = app(_msg("query.recommend", too_big), _context())
    assert reply.has_error() and reply.error.reason.startswith("ConfigError:")  # the framework's rule, in hello
    assert "delta 0.01 is above 1 / (10 x its number of customers); run the job with --delta 0.001" in \
        reply.error.reason
    train = _config(catalogue, root, epsilon=8.0, round=1, delta=2e-3, **{"job-id": "job-delta"})
    refused = app(_msg("train.recommend", train, ItemParams.init(catalogue.num_items, 8, 0)), _context())
    # the gate's rule (every task's), whatever delta a later message names; nothing trained or stored
    assert refused.has_error() and refused.error.reason.startswith("ConfigError:")
    assert "delta 0.002 is above 1 / (10 x its number of customers)" in refused.error.reason
    assert _state(root, "job-delta") is None
    assert not app(_msg("query.recommend", {**too_big, "delta": 1e-6}), _context()).has_error()


def test_private_evaluation_releases_only_noised_sums_charged_to_the_partner(partner_root, monkeypatch):
    from fedinsight.privacy.ledger import PrivacyLedger

    root, catalogue = partner_root
    released = []
    original = client.gaussian

    def spy(values, sensitivity, noise_multiplier):
        out = original(values, sensitivity=sensitivity, noise_multiplier=noise_multiplier)
        released.append((list(values), out))
        return out

    monkeypatch.setattr(client, "gaussian", spy)
    ledger = f"sqlite:///{root / 'eval-ledger.db'}"
    config = _config(catalogue, root, epsilon=8.0, final=True, **{"job-id": "job-eval", "eval-noise-multiplier": 3.0,
                                                                  "eval-min-customers": 1})
    reply = app(_msg("evaluate.recommend", config, ItemParams.init(catalogue.num_items, 8, 0)),
                _deployed(root, **{"ledger-url": ledger}))
    assert not reply.has_error(), reply.error
    assert set(reply.content) == {"release", "metrics"}  # no per-item counts, no exact sums
    assert set(reply.content["release"]) == {"hr", "ndcg"} and set(reply.content["metrics"]) == {"epsilon"}
    (exact, noisy), = released
    assert noisy.sensitivity == pytest.approx(math.sqrt(2)) and noisy.scale == pytest.approx(3.0 * math.sqrt(2))
    assert [reply.content["release"][k] for k in ("hr", "ndcg")] == pytest.approx(list(noisy.values))
    assert 0 <= exact[1] <= exact[0] <= 60  # sums over 60 customers of values in [0, 1] (NDCG <= hit)
    charges = PrivacyLedger(ledger).charges("partner-0")
    assert [(c.kind, c.event.noise_multiplier) for c in charges] == [("evaluation", 3.0)]
    assert "final evaluation" in charges[0].description


def test_a_private_evaluation_with_too_little_noise_is_refused(partner_root):
    root, catalogue = partner_root
    config = _config(catalogue, root, epsilon=1.0, **{"job-id": "job-eval-greedy", "eval-noise-multiplier": 0.2})
    reply = app(_msg("evaluate.recommend", config, ItemParams.init(catalogue.num_items, 8, 0)), _context())
    assert reply.has_error() and "the 1 it was charged for" in reply.error.reason
    missing = _config(catalogue, root, epsilon=1.0, **{"job-id": "job-eval-none"})
    reply = app(_msg("evaluate.recommend", missing, ItemParams.init(catalogue.num_items, 8, 0)), _context())
    assert reply.has_error() and "eval-noise-multiplier" in reply.error.reason

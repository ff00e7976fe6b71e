"""Distributed-noise propensity training (``noise-model = distributed-secagg``) through the real partner ClientApp
and Flower's SecAgg+ workflow, in process.

Three small synthetic partners: the coordinator sees only masked vectors (declared in the manifest) -- for
training and for the feature statistics, the LTV histogram and the evaluation (issue 14) --, the ledger charges
exactly what the accountant gives for the full noise of the *sum* (the partners' shares together carry it),
the trust model is recorded in summary.json, the ledger and the report, a partner's
noise share comes from OS entropy, and a round that lost more partners than tolerated is never unmasked.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from dp_accounting import dp_event
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE, Key, Stage
from support.fake_grid import InProcessGrid

from fedinsight.core.errors import ConfigError, SecureAggregationError
from fedinsight.data import PartitionSpec, load_federation
from fedinsight.data.federation import write_partner_folder
from fedinsight.federation.secagg import to_legacy_config
from fedinsight.federation.task import start
from fedinsight.partner.clientapp import app as client_app
from fedinsight.partner.policy_init import init_federation
from fedinsight.partner.side import PartnerSide
from fedinsight.privacy.distributed_dp import MODULUS
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks.propensity import TASK, distributed, secure_client
from fedinsight.tasks.propensity.evaluation import eval_event
from fedinsight.tasks.propensity.features import synthetic_window
from fedinsight.tasks.propensity.options import PropensityOptions

PARTNERS = 3
ROUNDS = 3


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist-partners")
    parts = load_federation("synthetic", PartitionSpec(partners=PARTNERS, seed=0), synthetic_customers=2400)
    write_partner_folder(parts, root)
    init_federation(root)
    return root


class SecAggGrid(InProcessGrid):
    """The partners' real ClientApp in process; ``victim`` goes silent when asked for its masked vector."""

    def __init__(self, victim: int | None = None) -> None:
        super().__init__(client_app, PARTNERS)
        self.victim = None if victim is None else 100 + victim
        self.run = SimpleNamespace(run_id=1)  # what Flower's legacy workflow reads of a Grid besides messaging
        self.unmask_replies: list[Message] = []

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        stages = {m.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE) for m in messages
                  if m.metadata.message_type == "train" and RECORD_KEY_CONFIGS in m.content.config_records}
        if Stage.COLLECT_MASKED_VECTORS in stages and self.victim is not None:
            messages = [m for m in messages if m.metadata.dst_node_id != self.victim]
        # a real transport serialises each message; in process, partners must not share (and mutate) records
        messages = [Message(copy.deepcopy(m.content), dst_node_id=m.metadata.dst_node_id,
                            message_type=m.metadata.message_type, group_id=m.metadata.group_id) for m in messages]
        replies = list(super().send_and_receive(messages, timeout=timeout))
        if Stage.UNMASK in stages:
            self.unmask_replies.extend(replies)
        return replies


def _run_config(tmp_path: Path, data_root: Path, **overrides) -> dict:
    window = synthetic_window()
    rc = {"task": "propensity", "partners": PARTNERS, "rounds": ROUNDS, "out-dir": str(tmp_path / "out"),
          "start": window.start.isoformat(), "cutoff": window.cutoff.isoformat(), "end": window.end.isoformat(),
          "data-root": str(data_root), "ledger-url": f"sqlite:///{tmp_path / 'ledger.db'}", "job-id": "job-d",
          # the job's delta given (the partners' handlers are also called directly here, as a coordinator would
          # after resolving a default delta in hello: tests/flows/every_task/test_delta_rule.py)
          "dataset": "synthetic", "budget": 1.0, "budget-delta": 1e-6, "delta": 1e-6, "epsilon": 1.0, "lr": 1.0,
          "noise-model": "distributed-secagg", "max-customers": 5000,
          "partner-ledger-url": f"sqlite:///{tmp_path / 'partners.db'}"}
    rc.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return rc


def _run(grid, rc: dict) -> dict:
    start(TASK, grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=rc))
    return json.loads((Path(rc["out-dir"]) / "summary.json").read_text())


@pytest.mark.slow
def test_training_sends_only_masked_sums_and_charges_the_full_noise_of_the_sum(tmp_path, data_root):
    grid = SecAggGrid()
    rc = _run_config(tmp_path, data_root)
    summary = _run(grid, rc)
    options = PropensityOptions.from_run_config(rc)
    privacy = summary["privacy"]

    # no partner was asked for a local (unmasked) training round, statistics, LTV histogram or evaluation: after
    # hello every message is a SecAgg+ stage; each of the rounds + 3 sums held every partner's masked vector
    assert {m.metadata.message_type for m in grid.sent} == {"query.propensity", "train"}
    assert {m.content["config"]["phase"] for m in grid.sent if m.metadata.message_type == "query.propensity"} == \
        {"hello"}
    masked = [r for r in grid.replies if r.metadata.message_type == "train" and not r.has_error()
              and Key.MASKED_PARAMETERS in r.content.config_records.get(RECORD_KEY_CONFIGS, {})]
    assert len(masked) == PARTNERS * (ROUNDS + 3)
    assert all(len(rec) == 0 for r in masked for rec in r.content.array_records.values())
    # a SecAgg+ reply's only metric is its weight, 1 (local releases' values and statuses travel as metrics)
    metric_values = [dict(rec) for r in grid.replies if not r.has_error() and r.metadata.message_type == "train"
                     for rec in r.content.metric_records.values() if len(rec)]
    assert metric_values and all(m == {"num_examples": 1} for m in metric_values), metric_values[:3]
    assert summary["messages"]["violations"] == [] and summary["messages"]["failures"] == []
    assert [r["secagg_partners"] for r in summary["metrics"]["per_round"]] == [PARTNERS] * ROUNDS
    releases = {(r["reply"], r["mechanism"]) for r in privacy["releases"]}
    assert ("secagg", distributed.MECHANISM) in releases and ("secagg", distributed.RELEASE_MECHANISM) in releases
    assert {r for r, _ in releases} == {"secagg"}  # no stats / ltv-hist / evaluate / train reply is even declared
    assert set(privacy["release_noise"].values()) == {"distributed-secagg"}
    assert {k: v["contributors"] for k, v in privacy["secagg"]["releases"].items()} == \
        dict.fromkeys(("stats", "ltv-hist", "evaluate"), PARTNERS)

    # trust model: summary.json, the ledger's charge, the report
    assert privacy["noise_model"] == "distributed-secagg"
    assert "at least 3 partners do not collude" in privacy["trust_model"]
    secagg = privacy["secagg"]
    assert secagg["noise_shares"] == PARTNERS and secagg["contributors_min"] == PARTNERS
    assert secagg["rounds_unmasked"] == ROUNDS and secagg["max_dropouts"] == 0
    ledger = PrivacyLedger(rc["ledger-url"])
    training = [c for c in ledger.charges() if c.kind == "training"]
    assert len(training) == PARTNERS and all("do not collude" in c.description for c in training)
    others = [c for c in ledger.charges() if c.kind in ("stats", "evaluation")]
    assert len(others) == 3 * PARTNERS and all("distributed noise" in c.description for c in others)
    from fedinsight.tasks.propensity.report import propensity_sections

    html = "".join(s.html() for s in propensity_sections(summary)[1])
    assert "distributed-secagg" in html and "do not collude" in html

    # the charge is the accountant's figure for the noise of the *sum*: rounds full-batch Gaussian releases at the
    # plan's multiplier (not a share's, which is sqrt(3) times larger), plus the local-noise releases
    dp = options.plan()
    enc = distributed.encoding(options, PARTNERS)
    assert enc.noise_multiplier == dp.noise_multiplier
    # three shares of variance (s step)^2 sum to the full (sigma C')^2
    assert PARTNERS * (enc.share_scale * enc.step) ** 2 == pytest.approx((dp.noise_multiplier * enc.sensitivity) ** 2)
    events = [dp.gaussian_event(), dp.gaussian_event(), *[dp_event.GaussianDpEvent(dp.noise_multiplier)] * ROUNDS]
    events.append(eval_event(options.eval_noise_multiplier()))  # the final evaluation (a SecAgg+ sum too)
    expected = compose_epsilon(events, options.delta)
    assert privacy["ledger_epsilon_charged_this_job"] == pytest.approx(expected, rel=1e-6)
    assert expected <= options.epsilon * (1 + 1e-6)
    own = PrivacyLedger(rc["partner-ledger-url"])  # each partner's own gate spent the same, round by round
    for partner in own.partners():
        assert compose_epsilon(own.job_events(partner, "job-d"), options.delta) == pytest.approx(expected, rel=1e-6)
    # the partners' gates answer only through masked sums: the coordinator states the charge, not an agreement
    assert privacy["accountants_agree_with_ledger"] is None and "own ledger" in privacy["epsilon_spent_source"]
    assert Path(summary["artifacts"]["model"]).exists()


@pytest.mark.slow
def test_a_round_that_lost_a_partner_is_never_unmasked_and_nothing_is_released(tmp_path, data_root):
    grid = SecAggGrid(victim=1)
    rc = _run_config(tmp_path, data_root, rounds=1)
    with pytest.raises(SecureAggregationError, match="propensity stats: .*lacks noise shares"):
        _run(grid, rc)
    assert len(grid.unmask_replies) == PARTNERS - 1  # the partners still online refused their unmasking shares
    assert all(r.has_error() and "refuses to unmask" in r.error.reason for r in grid.unmask_replies)
    assert not (Path(rc["out-dir"]) / "model.pt").exists()
    # the first sum (the feature statistics) lost a partner: nothing after it was asked for (no training round)
    assert len([r for r in grid.replies if r.metadata.message_type == "train" and not r.has_error()
                and Key.MASKED_PARAMETERS in r.content.config_records.get(RECORD_KEY_CONFIGS, {})]) == PARTNERS - 1
    assert not any(m.metadata.message_type.startswith("evaluate.") for m in grid.sent)


@pytest.mark.slow
def test_a_tolerated_drop_out_is_released_with_the_remaining_shares(tmp_path, data_root):
    grid = SecAggGrid(victim=1)
    summary = _run(grid, _run_config(tmp_path, data_root, rounds=1, max_dropouts=1))
    secagg = summary["privacy"]["secagg"]
    # 3 partners, all honest, 1 tolerated drop-out: every share carries 1/2 of the variance, so the 2 left suffice
    assert secagg["noise_shares"] == 2 and secagg["contributors_min"] == 2
    assert "never unmasked" in summary["privacy"]["trust_model"] and "more than 1 partner" in \
        summary["privacy"]["trust_model"]


def test_bad_trust_settings_are_refused_before_anyone_is_contacted(tmp_path, data_root):
    grid = SecAggGrid()
    with pytest.raises(ConfigError, match="max-dropouts"):
        _run(grid, _run_config(tmp_path, data_root, max_dropouts=3))
    with pytest.raises(ConfigError, match="honest-partners"):
        _run(grid, _run_config(tmp_path, data_root, honest_partners=4))
    with pytest.raises(ConfigError, match="--max-customers"):  # an MLP's 900 weights on a grid sized for 1e6
        _run(grid, _run_config(tmp_path, data_root, model="mlp", max_customers=1_000_000))
    assert grid.sent == []
    with pytest.raises(ConfigError, match="non-private"):
        PropensityOptions(noise_model="distributed-secagg", non_private=True)
    with pytest.raises(ConfigError, match="eval-every-round"):
        PropensityOptions(noise_model="distributed-secagg", eval_every_round=True)


def _secagg_context(enc, partition: int) -> Context:
    settings = enc.flower_settings()
    ctx = Context(run_id=1, node_id=100 + partition, node_config={"partition-id": partition}, state=RecordDict(),
                  run_config={})
    ctx.state.config_records[RECORD_KEY_STATE] = ConfigRecord({
        "clipping_range": float(settings["clipping_range"]), "target_range": int(settings["quantization_range"]),
        "mod_range": MODULUS, "max_weight": 1.0, "sample_num": enc.partners, "share_num": enc.partners})
    return ctx


def test_the_noise_share_comes_from_os_entropy_not_the_job_seed(tmp_path, data_root):
    """Two rounds from the same weights, data, scaler and job seed (and the same numpy/torch seeds) give the same
    clipped sum but different noise shares: the coordinator cannot replay a partner's noise."""
    import torch

    from fedinsight.models.propensity import SharedScaler, TargetScaler, build_model, get_weights, propensity_loss
    from fedinsight.models.propensity import tensors as to_tensors
    from fedinsight.privacy.dpsgd import clipped_gradient_sum
    from fedinsight.tasks.propensity.client import prepare
    from fedinsight.tasks.propensity.features import FEATURES, unit_spend

    rc = _run_config(tmp_path, data_root)
    options = PropensityOptions.from_run_config(rc)
    enc = distributed.encoding(options, PARTNERS)
    weights = get_weights(build_model(len(FEATURES), options.model, options.seed))
    config = {**rc, **options.to_run_config(), "phase": distributed.SECURE_PHASE, "secagg-partners": PARTNERS,
              "server-round": 1, "scaler-mean": [0.5] * len(FEATURES), "scaler-std": [0.3] * len(FEATURES),
              "target-mean": 0.0, "target-std": 1.0}
    partner = PartnerSide("training", _secagg_context(enc, 0), config)
    shares = []
    for _ in range(2):
        np.random.seed(options.seed)
        torch.manual_seed(options.seed)
        vector, weight, metrics = secure_client.secure_fit(partner, [distributed.flatten(weights, options)],
                                                           to_legacy_config(config))
        assert weight == 1 and metrics == {}
        shares.append(np.asarray(vector[0]))
    # the exact clipped sum on the grid, as the partner computes it
    split = prepare(partner, options, "job-d")
    scaler, target = SharedScaler((0.5,) * len(FEATURES), (0.3,) * len(FEATURES)), TargetScaler(0.0, 1.0)
    data = to_tensors(scaler.transform(split.unit_train), split.buys_train,
                      target.transform(unit_spend(split.spend_train, options.caps)))
    from fedinsight.tasks.propensity.secure_client import _model

    total = clipped_gradient_sum(_model([distributed.flatten(weights, options)], options), data, propensity_loss,
                                 max_grad_norm=options.max_grad_norm).numpy()
    exact = np.rint(total / enc.step) * enc.step
    noise = [s - exact for s in shares]
    assert not np.allclose(noise[0], noise[1])
    # each noise is on the grid and has the share's sd: with 22 coordinates the sample sd lies within [0.3, 3] x the
    # share sd except with probability < 1e-9 (chi-square with 22 degrees of freedom)
    sd = enc.share_scale * enc.step
    for n in noise:
        assert np.allclose(n / enc.step, np.rint(n / enc.step))
        assert 0.3 * sd < float(np.sqrt(np.mean(n ** 2))) < 3 * sd
    # and each round was spent at the partner's own gate before its share existed
    own = PrivacyLedger(rc["partner-ledger-url"])
    assert len(own.job_events(partner.partner_id, "job-d")) == 2
    assert math.isclose(compose_epsilon(own.job_events(partner.partner_id, "job-d"), options.delta),
                        compose_epsilon([dp_event.GaussianDpEvent(options.plan().noise_multiplier)] * 2, options.delta),
                        rel_tol=1e-6)


@pytest.mark.slow
def test_simulate_propensity_with_distributed_noise_on_flowers_runtime(tmp_path):
    """`fedinsight simulate propensity --noise-model distributed-secagg` on Flower's simulation runtime (Ray): the
    structure and the simulation-only exact figures, never the noisy ones."""
    import ray

    from fedinsight.cli import main

    out = tmp_path / "run"
    code = main(["simulate", "propensity", "--dataset", "synthetic", "--customers", "1200", "--partners", "2",
                 "--rounds", "1", "--epsilon", "1", "--delta", "1e-5", "--partition", "iid", "--noise-model",
                 "distributed-secagg", "--max-customers", "2000", "--out", str(out), "--cpus", "2", "--json"])
    assert code == 0
    assert not ray.is_initialized()
    summary = json.loads((out / "summary.json").read_text())
    privacy, metrics = summary["privacy"], summary["metrics"]
    assert privacy["noise_model"] == "distributed-secagg" and "do not collude" in privacy["trust_model"]
    assert privacy["secagg"]["contributors_min"] == 2 and privacy["secagg"]["rounds_unmasked"] == 1
    assert privacy["plan"]["sample_rate"] == 1.0 and privacy["plan"]["steps_per_round"] == 1  # full batch
    assert [r["secagg_partners"] for r in metrics["per_round"]] == [2]
    assert privacy["accountants_agree_with_ledger"] is None and privacy["epsilon_spent_max"] <= 1.0
    assert metrics["federated_exact"]["n"] == metrics["centralized"]["n"] > 0
    assert 0 <= metrics["federated_exact"]["auc"] <= 1
    assert summary["messages"]["violations"] == [] and summary["messages"]["failures"] == []
    assert (out / "model.pt").is_file()
    training = [c for c in PrivacyLedger(f"sqlite:///{out / 'ledger.db'}").charges() if c.kind == "training"]
    assert len(training) == 2 and all("distributed-secagg" in c.description for c in training)
    assert "Trust model: distributed-secagg" in (out / "report.html").read_text()


def test_cli_refuses_bad_distributed_settings_in_one_line(tmp_path, capsys):
    from fedinsight.cli import main

    assert main(["simulate", "propensity", "--noise-model", "distributed-secagg", "--non-private",
                 "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "drop --non-private" in err and "Traceback" not in err
    assert main(["simulate", "propensity", "--dataset", "synthetic", "--customers", "600", "--partners", "2",
                 "--noise-model", "distributed-secagg", "--max-dropouts", "2", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "--max-dropouts must be below" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_every_value_sent_is_declared_and_the_charge_is_the_manifests(tmp_path_factory, tmp_path):
    """The task contract's check (tests/flows/every_task) on the distributed-noise mode, on a federation of the
    partners' own exports (their own column names, through their mappings)."""
    from collections import Counter

    from support.federations import PARTNER_NAMES, own_federation, run_in_process

    from fedinsight.federation.guard import check_reply, spec_for
    from fedinsight.federation.task import job_delta

    federation = own_federation(tmp_path_factory.mktemp("own") / "partners")
    run = run_in_process("propensity", federation, tmp_path, **{"noise-model": "distributed-secagg",
                                                                 "max-customers": 5000})
    manifest = run.session.guard.manifest
    assert run.summary["messages"]["violations"] == [] and run.summary["messages"]["failures"] == []
    pairs = list(zip(run.grid.sent, run.grid.replies, strict=True))
    kinds = []
    for msg, reply in pairs:
        assert not reply.has_error(), reply.error.reason
        kind = "secagg" if "." not in msg.metadata.message_type else (
            str(msg.content["config"]["phase"]) if msg.metadata.message_type.startswith("query.")
            else msg.metadata.message_type.split(".")[0])
        kinds.append(kind)
        check_reply(reply, spec_for(manifest, kind))
    assert set(kinds) == {"hello", "secagg"}  # statistics, histogram and evaluation travel masked too
    masked = Counter(m.metadata.dst_node_id for m, r in pairs if "." not in m.metadata.message_type
                     and Key.MASKED_PARAMETERS in r.content.config_records.get(RECORD_KEY_CONFIGS, {}))
    rounds = run.session.options.rounds
    # one masked vector per round, plus the statistics, the LTV histogram and the evaluation, per partner
    assert sorted(masked.values()) == [rounds + 3] * len(PARTNER_NAMES)
    delta = job_delta(run.session.plan, run.session.options)
    expected = compose_epsilon(manifest.events(), delta)
    assert run.summary["privacy"]["epsilon_charged"] == pytest.approx(expected, rel=1e-6)
    own = PrivacyLedger(f"sqlite:///{tmp_path / 'partners.db'}")
    for partner in PARTNER_NAMES:  # each partner's own gate spent the same
        assert compose_epsilon(own.job_events(partner, run.session.job.job_id), delta) == pytest.approx(expected,
                                                                                                      rel=1e-6)


def test_statistics_and_evaluation_shares_are_the_exact_vectors_plus_fresh_noise_charged_at_the_sums_multiplier(
        tmp_path, data_root):
    """A partner's SecAgg+ share of the feature statistics and of the evaluation (issue 14): on the job's grid, the
    exact vector local mode would noise plus a discrete-Gaussian share from OS entropy (two calls differ), spent
    at the partner's own gate as one Gaussian release at the multiplier of the *sum* (what the ledger charges)."""
    from fedinsight.models.propensity import build_model, get_weights
    from fedinsight.tasks.propensity.client import exact_vector, prepare
    from fedinsight.tasks.propensity.features import FEATURES

    rc = _run_config(tmp_path, data_root)
    options = PropensityOptions.from_run_config(rc)
    weights = get_weights(build_model(len(FEATURES), options.model, options.seed))
    base = {**rc, **options.to_run_config(), "secagg-partners": PARTNERS, "scaler-mean": [0.5] * len(FEATURES),
            "scaler-std": [0.3] * len(FEATURES), "target-mean": 0.0, "target-std": 1.0,
            "tier-true": [10.0, 50.0], "tier-pred": [10.0, 50.0]}
    spent = []
    for release, kind in (("stats", "stats"), ("evaluate", "evaluation")):
        enc = distributed.release_encoding(options, PARTNERS, release)
        config = {**base, "phase": distributed.release_phase(release)}
        partner = PartnerSide("training", _secagg_context(enc, 0), config)
        shares = [np.asarray(secure_client.secure_fit(partner, [distributed.flatten(weights, options)],
                                                      to_legacy_config(config))[0][0]) for _ in range(2)]
        model = secure_client._model([distributed.flatten(weights, options)], options)
        exact = exact_vector(release, prepare(partner, options, "job-d"), options, config, model)
        assert exact.size == enc.coordinates and enc.sensitivity <= distributed.MAX_INFLATION * enc.clip
        on_grid = np.rint(exact / enc.step) * enc.step
        noise = [s - on_grid for s in shares]
        assert all(np.allclose(n / enc.step, np.rint(n / enc.step)) for n in noise)  # exact grid points
        assert not np.allclose(noise[0], noise[1])  # fresh OS entropy, whatever the job's seed
        # the share's sd: within [0.3, 3] x its scale except with probability < 1e-9 (chi-square, >= 45 d.o.f.)
        sd = enc.share_scale * enc.step
        assert all(0.3 * sd < float(np.sqrt(np.mean(n ** 2))) < 3 * sd for n in noise)
        charges = [c for c in PrivacyLedger(rc["partner-ledger-url"]).charges() if c.kind == kind]
        assert len(charges) == 2 and all(distributed.RELEASE_MECHANISM in c.description
                                         and "do not collude" in c.description for c in charges)
        spent.append(dp_event.GaussianDpEvent(enc.noise_multiplier))
    dp = options.plan()
    # the multipliers are local mode's for the same releases: the charge does not depend on the noise model
    assert [e.noise_multiplier for e in spent] == [dp.gaussian_noise_multiplier, options.eval_noise_multiplier()]
    own = PrivacyLedger(rc["partner-ledger-url"])
    assert compose_epsilon(own.job_events("partner-0", "job-d"), options.delta) == pytest.approx(
        compose_epsilon([spent[0], spent[0], spent[1], spent[1]], options.delta), rel=1e-9)


def test_a_distributed_job_never_answers_a_local_release(tmp_path, data_root):
    """A coordinator that asks a distributed-noise job's partner for its statistics, LTV histogram or evaluation
    in clear (a local-mode message) gets an error and nothing is spent."""
    from support.fake_grid import set_task_identity

    from fedinsight.tasks.propensity import client

    rc = _run_config(tmp_path, data_root)
    options = PropensityOptions.from_run_config(rc)
    set_task_identity()
    for kind, phase, handler in (("query", "stats", client.query), ("query", "ltv-hist", client.query),
                                 ("evaluate", "evaluate", client.evaluate)):
        cfg = {**rc, **options.to_run_config(), "phase": phase}
        msg = Message(RecordDict({"config": ConfigRecord(cfg)}), dst_node_id=100,
                      message_type=f"{kind}.propensity")
        partner = PartnerSide("training", Context(run_id=1, node_id=100, node_config={"partition-id": 0},
                                                  state=RecordDict(), run_config={}), cfg)
        with pytest.raises(ConfigError, match="unmasked"):
            handler(msg, partner)
    assert not Path(rc["partner-ledger-url"].removeprefix("sqlite:///")).exists() or \
        PrivacyLedger(rc["partner-ledger-url"]).charges() == []


def test_the_pooled_evaluation_is_withheld_on_its_noisy_count():
    """Distributed noise: no partner decides suppression (nothing of its own leaves); the coordinator withholds the
    pooled evaluation when the *sum's* noisy held-out count is below the minimum (post-processing)."""
    from fedinsight.tasks.propensity import evaluation, secure_server

    options = PropensityOptions(noise_model="distributed-secagg", start="2024-01-01", cutoff="2025-01-01",
                                end="2025-07-01", min_eval_customers=80)
    enc = distributed.release_encoding(options, PARTNERS, "evaluate")
    values = {"n": 79.5, "positives": 30.0, "hist_pos": np.full(evaluation.DP_LOGIT_BINS, 2.0),
              "hist_neg": np.full(evaluation.DP_LOGIT_BINS, 3.0), "sum_log_loss": 40.0, "sum_abs_error": 900.0,
              "tier_confusion": np.ones(9)}
    below = secure_server.SecureRelease("evaluate", evaluation.scaled_vector(values, options.eval_caps), PARTNERS, enc)
    metrics, curves = secure_server.read_evaluation(below, options, tiers=True)
    assert curves is None and metrics["suppressed"] == 1.0 and math.isnan(metrics["auc"])
    assert metrics["partners_suppressed"] == PARTNERS and metrics["partners"] == 0
    above = secure_server.SecureRelease("evaluate", evaluation.scaled_vector({**values, "n": 80.0},
                                                                             options.eval_caps), PARTNERS, enc)
    metrics, curves = secure_server.read_evaluation(above, options, tiers=True)
    assert curves is not None and metrics["partners"] == PARTNERS and metrics["partners_suppressed"] == 0
    assert metrics["auc"] == pytest.approx(0.5)  # equal histogram shapes: post-processing of the sum, exactly
    assert metrics["auc_noise_sd"] > 0  # from the sum's own noise sd (one Gaussian release of the sum)


def test_a_partner_whose_own_evaluation_minimum_is_above_the_jobs_refuses_in_hello(tmp_path, data_root):
    """Issue 14: a partner's own ``min-eval-customers`` holds in distributed mode too. The coordinator withholds the
    pooled evaluation on the job's minimum only, so a partner with a higher floor of its own refuses in hello,
    naming the setting, before anything is charged; the same partner takes part in a job at its floor."""
    from fedinsight.partner.side import PartnerSide

    grid = SecAggGrid()
    grid.contexts[101].node_config["min-eval-customers"] = 400  # partner-1's own setting, not the coordinator's
    with pytest.raises(ConfigError, match="partner-1: its own min-eval-customers 400 is above the job's minimum 50"):
        _run(grid, _run_config(tmp_path, data_root))  # the partner's refusal in hello stops the job
    refusals = [r for r in grid.replies if r.has_error()]
    assert len(refusals) == 1 and "min-eval-customers 400" in refusals[0].error.reason
    assert "--min-eval-customers 400" in refusals[0].error.reason
    assert not any(m.metadata.message_type == "train" for m in grid.sent)  # no SecAgg+ round started
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert all(ledger.status(p).epsilon_spent == 0 for p in ledger.partners())
    assert not Path(tmp_path / "partners.db").exists() or PrivacyLedger(f"sqlite:///{tmp_path / 'partners.db'}"
                                                                        ).charges() == []

    # the partner's hello check passes for a job at its floor, and for a job that evaluates nothing
    for overrides in ({"min_eval_customers": 400}, {"min_eval_customers": 50, "evaluate": False}):
        rc = _run_config(tmp_path, data_root, **overrides)
        options = PropensityOptions.from_run_config(rc)
        ctx = Context(run_id=1, node_id=101, node_config={"partition-id": 1, "min-eval-customers": 400},
                      state=RecordDict(), run_config={})
        secure_client.check_own_floor(PartnerSide("training", ctx, rc), options)

    # and a coordinator that skips hello still gets no evaluation share from it: nothing is spent
    rc = _run_config(tmp_path, data_root)
    options = PropensityOptions.from_run_config(rc)
    enc = distributed.release_encoding(options, PARTNERS, "evaluate")
    config = {**rc, **options.to_run_config(), "phase": distributed.release_phase("evaluate"),
              "secagg-partners": PARTNERS}
    ctx = _secagg_context(enc, 1)
    ctx.node_config["min-eval-customers"] = 400
    with pytest.raises(ConfigError, match="min-eval-customers 400"):
        secure_client.secure_fit(PartnerSide("training", ctx, config), [], to_legacy_config(config))
    assert not Path(tmp_path / "partners.db").exists() or PrivacyLedger(f"sqlite:///{tmp_path / 'partners.db'}"
                                                                        ).charges() == []

"""Distributed-noise uplift training (``--noise-model distributed-secagg``) on an own mapped federation, through the
partners' real ClientApp and Flower's SecAgg+ workflow, in process.

What must hold: after hello the coordinator sees the whitening statistics (one declared Gaussian release per partner)
and then only masked sums until the model exists; the ledger charges what the plan composes (the full noise of the
*sum*, not a share's), each partner's own gate spent the same; the released model is the ordinary model file (the
offer export reads it); bad trust settings are refused before anyone is contacted and nothing is charged.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from support.federations import PARTNER_NAMES, run_in_process

from fedinsight.core.errors import FedinsightError
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks.uplift import distributed
from fedinsight.tasks.uplift.options import UpliftOptions
from fedinsight.tasks.uplift.server import manifest

ROUNDS = 3


@pytest.fixture(scope="module")
def federation(shared_own_federation):
    return shared_own_federation  # the session's own federation (tests/conftest.py): these tests only read it


def test_training_sends_the_whitening_release_and_masked_sums_only_and_charges_the_plan(federation, tmp_path):
    from fedinsight.cli import main

    run = run_in_process("uplift", federation, tmp_path, rounds=ROUNDS, noise_model="distributed-secagg",
                         max_customers=5000)
    summary, grid = run.summary, run.grid
    assert summary["messages"]["violations"] == [] and summary["messages"]["failures"] == []
    # no local training round: the queries are hello, the whitening statistics and the three releases of the model
    phases = [m.content["config"]["phase"] for m in grid.sent if m.metadata.message_type == "query.uplift"]
    assert set(phases) == {"hello", "whitening", "evaluate", "policy", "economics"}
    assert phases.count("whitening") == len(PARTNER_NAMES)
    assert not any(m.metadata.message_type == "train.uplift" for m in grid.sent)
    masked = [r for r in grid.replies if r.metadata.message_type == "train" and not r.has_error()
              and Key.MASKED_PARAMETERS in r.content.config_records.get(RECORD_KEY_CONFIGS, {})]
    assert len(masked) == len(PARTNER_NAMES) * ROUNDS
    assert all(len(rec) == 0 for r in masked for rec in r.content.array_records.values())

    noise = summary["noise"]
    assert noise["noise_model"] == "distributed-secagg" and "do not collude" in noise["trust_model"]
    assert noise["secagg"]["rounds_unmasked"] == ROUNDS and noise["secagg"]["contributors_min"] == len(PARTNER_NAMES)

    # the charge is the plan's: rounds full-batch Gaussian steps at the multiplier of the sum, plus four releases
    options = UpliftOptions.from_run_config({**{k.replace("_", "-"): v for k, v in summary["settings"].items()},
                                             "delta": summary["privacy"]["delta"]})
    plan = options.plan()
    assert plan.sample_rate == 1.0 and plan.steps_per_round == 1 and plan.gaussian_releases == 4
    planned = compose_epsilon(manifest(options, "uplift", len(PARTNER_NAMES)).events(), options.delta)
    assert planned == pytest.approx(plan.planned_epsilon(), rel=1e-3)
    assert summary["privacy"]["epsilon_charged"] == pytest.approx(planned, rel=1e-6)
    own = PrivacyLedger(f"sqlite:///{tmp_path / 'partners.db'}")  # every partner's own gate spent the same
    assert len(own.partners()) == len(PARTNER_NAMES)
    for partner in own.partners():
        assert compose_epsilon(own.job_events(partner, summary["job_id"]), options.delta) == \
            pytest.approx(planned, rel=1e-6)
    training = [c for c in own.charges() if c.kind == "training"]
    assert len(training) == len(PARTNER_NAMES) * ROUNDS and all("do not collude" in c.description for c in training)
    from fedinsight.tasks.uplift.report import uplift_sections

    html = "".join(s.html() for s in uplift_sections(summary)[1])
    assert "secure aggregation" in html and "do not collude" in html

    # the released model is the ordinary model file: separate heads on the hinge basis, and the export reads it
    model = json.loads((tmp_path / "uplift_model.json").read_text())
    assert model["heads"] == "separate" and model["basis"] == "hinge"
    assert np.isfinite(np.asarray(model["weights"]["arm_heads.weight"])).all()
    assert main(["partner", "export", "offers", "--model", str(tmp_path / "uplift_model.json"), "--partner-data",
                 str(federation.folder(PARTNER_NAMES[0])), "--as-of", "2026-01-01",
                 "--out", str(tmp_path / "offers.csv")]) == 0


@pytest.mark.parametrize(("extra", "says"), [
    ({"honest_partners": 9}, "honest-partners"),
    ({"max_dropouts": 3}, "max-dropouts"),
    ({"heads": "shared"}, "--heads separate"),
])
def test_bad_distributed_settings_are_refused_before_any_budget(federation, tmp_path, extra, says):
    with pytest.raises(FedinsightError, match=says) as refused:
        run_in_process("uplift", federation, tmp_path, rounds=1, noise_model="distributed-secagg", **extra)
    assert "max-customers" not in str(refused.value)  # a trust mistake is not sent to the grid's advice
    ledger = tmp_path / "ledger.db"
    assert not ledger.exists() or PrivacyLedger(f"sqlite:///{ledger}").partners() == []  # nothing charged


def test_a_partner_that_trusts_fewer_partners_refuses_in_hello_before_any_budget(federation, tmp_path):
    with pytest.raises(FedinsightError, match="max-honest-partners"):
        run_in_process("uplift", federation, tmp_path, rounds=1, noise_model="distributed-secagg",
                       node_config=lambda k: {"max-honest-partners": 2})
    ledger = tmp_path / "ledger.db"
    assert not ledger.exists() or PrivacyLedger(f"sqlite:///{ledger}").partners() == []
    own = tmp_path / "partners.db"
    assert not own.exists() or all(not PrivacyLedger(f"sqlite:///{own}").charges(p)
                                   for p in PrivacyLedger(f"sqlite:///{own}").partners())


def test_one_partner_cannot_run_with_distributed_noise():
    options = UpliftOptions(offer_costs="a=1", noise_model="distributed-secagg")
    with pytest.raises(FedinsightError, match="at least 2 partners"):
        distributed.encoding(options, 1)


def test_a_whitening_outside_the_public_bound_is_refused_and_a_bounded_one_keeps_every_sum_finite():
    # a coordinator could send a matrix that overflows only for some customers, and learn from the refusal that
    # such a customer exists: anything past the public bound is refused from the config alone (no customer read)
    options = UpliftOptions(offer_costs="a=1,b=2", noise_model="distributed-secagg")
    d = distributed.width(options)
    matrix = np.eye(d)
    matrix[d - 1, :] = 1e300  # the top knot's hinge column: non-zero only for customers past the last knot
    config = {"whiten-mean": [0.0] * d, "whiten-matrix": matrix.ravel().tolist()}
    with pytest.raises(FedinsightError, match="public bound"):
        distributed.Whitening.from_config(config, options)
    # at the bound, with the most extreme customers and weights, the sum stays finite and within the clip
    worst = distributed.Whitening(np.full(d, -distributed.MAX_ENTRY), np.full((d, d), distributed.MAX_ENTRY),
                                  np.ones(3))
    vector = np.full(distributed.coordinates(options), distributed.MAX_ENTRY)
    x = np.vstack([np.ones((1, 5)), np.zeros((1, 5))])
    for row in range(2):
        one = distributed.gradient_sum(vector, worst, x[row:row + 1], np.array([row]), np.array([1.0]), options)
        assert np.isfinite(one).all() and np.linalg.norm(one) <= options.clip * (1 + 1e-9)
    with pytest.raises(FedinsightError, match="at most"):
        distributed.heads(np.full(distributed.coordinates(options), 1e7), options)


def test_the_whitening_from_noisy_statistics_is_finite_and_scaled_and_too_few_customers_are_refused():
    options = UpliftOptions(offer_costs="a=1,b=2", noise_model="distributed-secagg")
    rng = np.random.default_rng(6)
    x, arm = rng.random((300, 5)), rng.integers(0, 3, 300)
    exact = distributed.gram_vector(x, arm, options)
    noisy = exact + rng.normal(0, 20.0, exact.size)  # enough noise for negative eigenvalues
    w = distributed.Whitening.from_gram(noisy, options)
    assert np.isfinite(w.matrix).all() and np.isfinite(w.mean).all() and (w.counts >= 1).all()
    # noise this large for 300 customers shifts the mean (so vectors are off-centre), but the scale is taken from the
    # floored eigenvalues: no blow-up (before that, a negative eigenvalue made the scale ~10^6 times too large)
    assert 0.3 < np.sqrt((w.apply(x, options) ** 2).sum(axis=1).mean()) < 20
    empty = np.zeros_like(exact)
    empty[:3] = -5.0  # the noisy counts of partners with almost nobody
    with pytest.raises(FedinsightError, match="too few customers"):
        distributed.Whitening.from_gram(empty, options)


@pytest.mark.parametrize("extra", [{"knots": "none"}, {"offer_costs": "b=2"}])
def test_in_process_distributed_training_learns_with_two_arms_or_no_knots(extra):
    # the benchmarks' in-process path (the partners' own code, summed as SecAgg+ would): the log loss on the training
    # customers falls from the initial model's, for a two-arm campaign and for the features without hinges
    import torch

    from fedinsight.models.uplift import build_model, set_weights, tensors, uplift_loss
    from fedinsight.tasks.uplift.features import Audience
    from fedinsight.tasks.uplift.simulate import distributed_models

    options = UpliftOptions(**{"offer_costs": "a=1,b=2", **extra}, noise_model="distributed-secagg", rounds=8,
                            epsilon=8.0)
    rng = np.random.default_rng(7)
    sets = []
    for _ in range(3):
        n = 1500
        x = rng.random((n, 5))
        arm = rng.integers(0, len(options.arms), n)
        p = 1 / (1 + np.exp(-(-2 + 2 * x[:, 0] + (arm > 0) * x[:, 1])))
        y = (rng.random(n) < p).astype(float)
        sets.append(Audience(ids=pd.Index(np.arange(n).astype(str)), x=x, arm=arm, converted=y, spend_year=np.zeros(n),
                             order_value=np.zeros(n), orders=np.zeros(n)))
    models = list(distributed_models(sets, options))
    assert len(models) == options.rounds

    def loss(weights):
        model = set_weights(build_model(5, len(options.arms), 0, 0, options.knot_values, "separate"), weights)
        with torch.no_grad():
            return float(np.mean([uplift_loss(model, tensors(s.x, s.arm, s.converted)).item() for s in sets]))

    start = {k: np.zeros_like(v) for k, v in models[0].items()}  # the whitened heads start at 0
    assert loss(models[-1]) < loss(start) - 0.02


def test_a_partner_over_the_public_customer_bound_refuses_in_hello_before_any_budget(federation, tmp_path):
    with pytest.raises(FedinsightError, match="max-customers"):
        run_in_process("uplift", federation, tmp_path, rounds=1, noise_model="distributed-secagg", max_customers=5)
    ledger = tmp_path / "ledger.db"
    assert not ledger.exists() or PrivacyLedger(f"sqlite:///{ledger}").partners() == []


def test_whitened_heads_convert_exactly_to_the_ordinary_model():
    # the coordinator releases the whitened heads as the plain model's weights: the logits must be the same
    import torch

    from fedinsight.models.uplift import build_model, set_weights

    options = UpliftOptions(offer_costs="a=1,b=2", noise_model="distributed-secagg")
    rng = np.random.default_rng(3)
    x, arm = rng.random((400, 5)), rng.integers(0, 3, 400)
    whitening = distributed.Whitening.from_gram(distributed.gram_vector(x, arm, options), options)
    vector = rng.normal(size=distributed.coordinates(options))
    model = set_weights(build_model(5, 3, 0, 0, options.knot_values, "separate"),
                        distributed.to_model_weights(vector, whitening, options))
    bias, weight = distributed.heads(vector, options)
    with torch.no_grad():
        logits = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert np.abs(logits - (bias + whitening.apply(x, options) @ weight.T)).max() < 1e-4


def test_the_gradient_sum_clips_each_customer_in_the_whitened_coordinates():
    options = UpliftOptions(offer_costs="a=1,b=2", noise_model="distributed-secagg")
    rng = np.random.default_rng(4)
    x, arm, y = rng.random((300, 5)), rng.integers(0, 3, 300), (rng.random(300) < 0.3).astype(float)
    whitening = distributed.Whitening.from_gram(distributed.gram_vector(x, arm, options), options)
    vector = rng.normal(size=distributed.coordinates(options))
    bias, weight = distributed.heads(vector, options)
    inputs = np.column_stack([np.ones(len(x)), whitening.apply(x, options)])
    p = 1 / (1 + np.exp(-(bias[arm] + np.einsum("ij,ij->i", inputs[:, 1:], weight[arm]))))
    expected = np.zeros((3, inputs.shape[1]))
    for i in range(len(x)):
        g = (p[i] - y[i]) * inputs[i]
        expected[arm[i]] += g * min(1.0, options.clip / np.linalg.norm(g))
    got = distributed.gradient_sum(vector, whitening, x, arm, y, options)
    assert np.abs(got - expected.ravel()).max() < 1e-4
    # whatever matrix the coordinator sends, one customer moves the sum by at most the clipping norm
    huge = distributed.Whitening(whitening.mean, whitening.matrix * 1e4, whitening.counts)
    one = distributed.gradient_sum(vector, huge, x[:1], arm[:1], y[:1], options)
    assert np.linalg.norm(one) <= options.clip * (1 + 1e-5)


def test_the_whitening_statistics_stay_within_their_declared_sensitivity():
    options = UpliftOptions(offer_costs="a=1,b=2", noise_model="distributed-secagg")
    rng = np.random.default_rng(5)
    corners = np.vstack([np.ones((1, 5)), np.zeros((1, 5)), rng.random((200, 5))])  # the longest basis vectors
    for i in range(len(corners)):
        one = distributed.gram_vector(corners[i:i + 1], np.array([i % 3]), options)
        assert np.linalg.norm(one) <= distributed.GRAM_SENSITIVITY * (1 + 1e-9)
    # and the noiseless statistics give back the basis's own mean and a whitening to unit-ish spread
    x, arm = rng.random((2000, 5)) * 0.6, rng.integers(0, 3, 2000)  # short vectors: none clipped
    w = distributed.Whitening.from_gram(distributed.gram_vector(x, arm, options), options)
    assert np.allclose(w.mean, distributed.basis(x, options.knot_values).mean(axis=0))
    assert np.allclose(w.counts, np.bincount(arm))
    assert np.sqrt((w.apply(x, options) ** 2).sum(axis=1).mean()) == pytest.approx(distributed.RMS, rel=1e-6)

"""The propensity task's DP evaluation: its sensitivity, its price in the plan, and how close its AUC stays to
the exact one (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
from dp_accounting import dp_event

import fedinsight.tasks.propensity.protocol as proto
from fedinsight.federation.manifest import Manifest
from fedinsight.models.metrics import roc_auc
from fedinsight.privacy.ledger import compose_epsilon
from fedinsight.tasks.propensity import evaluation
from fedinsight.tasks.propensity.features import FEATURES
from fedinsight.tasks.propensity.options import PropensityOptions
from fedinsight.tasks.propensity.server import _shapes

WINDOW = {"start": "2024-01-01", "cutoff": "2025-01-01", "end": "2025-07-01"}
CAPS = evaluation.EvalCaps(log_loss=3.0, error=200.0)


def _scaled(values: dict) -> np.ndarray:  # noqa: ANN001
    scale = evaluation.scales(CAPS)
    return np.concatenate([np.atleast_1d(np.asarray(values[k], float)) / scale[k] for k in evaluation.LENGTHS])


def test_one_customer_moves_the_scaled_release_by_at_most_its_sensitivity():
    rng = np.random.default_rng(0)
    n = 300
    y, p = (rng.random(n) < 0.4).astype(float), rng.random(n)
    spend, ltv = rng.exponential(80, n), rng.exponential(60, n)
    true_t, pred_t = rng.integers(0, 3, n), rng.integers(0, 3, n)
    full = _scaled(evaluation.exact_release(y, p, caps=CAPS, spend=spend, ltv=ltv, true_tiers=true_t,
                                            predicted_tiers=pred_t))
    worst = 0.0
    for i in range(n):
        keep = np.arange(n) != i
        without = _scaled(evaluation.exact_release(y[keep], p[keep], caps=CAPS, spend=spend[keep], ltv=ltv[keep],
                                                   true_tiers=true_t[keep], predicted_tiers=pred_t[keep]))
        worst = max(worst, float(np.linalg.norm(full - without)))
    # a customer with extreme values reaches the bound: a certain repurchaser scored ~0 with a huge error
    extreme = _scaled(evaluation.exact_release(np.array([1.0]), np.array([1e-9]), caps=CAPS, spend=np.array([1e6]),
                                               ltv=np.array([0.0]), true_tiers=np.array([2]),
                                               predicted_tiers=np.array([0])))
    assert worst <= evaluation.SENSITIVITY + 1e-9
    assert np.linalg.norm(extreme) == pytest.approx(evaluation.SENSITIVITY)


def test_the_evaluation_is_priced_in_the_plan_and_everything_composes_to_the_jobs_epsilon():
    options = PropensityOptions(**WINDOW, epsilon=1.0, delta=1e-6)
    dp, m = options.plan(), options.eval_noise_multiplier()
    manifest = Manifest("propensity", tuple(proto.releases(options, dp, _shapes(options), len(FEATURES))))
    evaluations = [r for r in manifest.private() if r.reply == "evaluate"]
    assert len(evaluations) == 1 and evaluations[0].count == 1 and evaluations[0].mechanism == "gaussian"
    assert evaluations[0].event == dp_event.GaussianDpEvent(m)
    total = compose_epsilon(manifest.events(), 1e-6)
    assert 0.99 <= total <= 1.0  # all of the job's epsilon, never more
    assert compose_epsilon(dp.events(), 1e-6) <= 0.9 + 1e-3  # training and statistics keep 90 %

    every = PropensityOptions(**WINDOW, epsilon=1.0, delta=1e-6, eval_every_round=True)
    releases = [r for r in Manifest("propensity", tuple(proto.releases(every, every.plan(), _shapes(every),
                                                                       len(FEATURES)))).private()
                if r.reply == "evaluate"]
    assert releases[0].count == every.rounds + 1
    assert every.eval_noise_multiplier() > 3 * m  # 21 releases in the same share: much more noise each


def test_without_evaluation_nothing_is_declared_or_charged_for_it():
    options = PropensityOptions(**WINDOW, evaluate=False)
    manifest = Manifest("propensity", tuple(proto.releases(options, options.plan(), _shapes(options),
                                                           len(FEATURES))))
    assert "evaluate" not in manifest.kinds()
    assert options.eval_noise_multiplier() is None and options.training_epsilon == options.epsilon


def test_noisy_auc_stays_close_to_the_exact_auc_at_cdnow_size():
    """Ten partners with ~470 held-out customers each (CDNOW's 23,570 customers, 20 % held out), epsilon 1,
    10 % of it for one final evaluation. Measured (seeded population, 40 draws): see the assertion; the
    coordinator's own estimate of the noise's spread (auc_noise_sd) is of the same size."""
    options = PropensityOptions(**WINDOW, epsilon=1.0, delta=1e-6)
    m = options.eval_noise_multiplier()
    rng = np.random.default_rng(1)
    partners = []
    for _ in range(10):
        logit = rng.normal(-0.8, 1.3, 470)
        y = (rng.random(470) < 1 / (1 + np.exp(-1.2 * logit))).astype(float)
        partners.append((y, 1 / (1 + np.exp(-logit))))
    y_all, p_all = np.concatenate([y for y, _ in partners]), np.concatenate([p for _, p in partners])
    exact = roc_auc(y_all, p_all)
    errors, spreads = [], []
    for _ in range(40):
        releases = [evaluation.noisy_release(evaluation.exact_release(y, p, caps=CAPS), CAPS, m)
                    for y, p in partners]
        metrics, summary = evaluation.read(releases, tiers=False, noise_multiplier=m)
        errors.append(abs(metrics["auc"] - exact))
        spreads.append(metrics["auc_noise_sd"])
        assert summary.hist_pos.min() >= 0 and summary.n > 0 and 0 <= metrics["auc"] <= 1
    print(f"exact AUC {exact:.4f}; noisy: mean |error| {np.mean(errors):.4f}, max {max(errors):.4f}, "
          f"estimated sd {np.mean(spreads):.4f}")
    assert float(np.mean(errors)) < 0.08 and 0.5 * np.mean(errors) < np.mean(spreads) < 3 * np.mean(errors)


def test_the_distributed_vector_is_the_scaled_release_and_decodes_back_exactly():
    """Distributed noise sends :func:`evaluation.scaled_vector` (the vector whose sensitivity is checked above); each
    customer's part of it lies in [0, 1] per number, so a partner's vector lies in [0, N x L2], what the SecAgg+ grid
    assumes; the coordinator's :func:`evaluation.unscaled` gives back the release's keys and units exactly."""
    rng = np.random.default_rng(1)
    n = 200
    y, p = (rng.random(n) < 0.3).astype(float), rng.random(n)
    spend, ltv = rng.exponential(80, n), rng.exponential(60, n)
    values = evaluation.exact_release(y, p, caps=CAPS, spend=spend, ltv=ltv, true_tiers=rng.integers(0, 3, n),
                                      predicted_tiers=rng.integers(0, 3, n))
    flat = evaluation.scaled_vector(values, CAPS)
    assert flat.size == evaluation.COORDINATES and np.array_equal(flat, _scaled(values))
    back = evaluation.unscaled(flat, CAPS)
    for key in evaluation.LENGTHS:
        assert np.allclose(np.atleast_1d(back[key]), np.atleast_1d(values[key]), rtol=1e-12, atol=1e-9), key
    one = evaluation.scaled_vector(evaluation.exact_release(np.array([1.0]), np.array([1e-9]), caps=CAPS,
                                                            spend=np.array([1e6]), ltv=np.array([0.0]),
                                                            true_tiers=np.array([2]), predicted_tiers=np.array([0])),
                                   CAPS)
    assert one.min() >= 0 and one.max() <= 1


def test_suppression_is_decided_on_the_noisy_count_only():
    """The flag reads the release's (noisy) ``n`` and nothing else: at the minimum it is released, just below it or
    NaN it is not (privacy/suppression.py's rule)."""
    assert evaluation.suppressed({"n": 49.999}, 50) and not evaluation.suppressed({"n": 50.0}, 50)
    assert evaluation.suppressed({"n": float("nan")}, 50) and not evaluation.suppressed({"n": 1e6}, 1000)

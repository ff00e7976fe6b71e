"""LiRA (Carlini et al. 2022): separable members are found at 0.1 % FPR, unrelated scores are not."""

from __future__ import annotations

import numpy as np
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.lira import leave_one_out_scores, lira_scores, logit_confidence, tpr_at_fpr


def _runs(models: int, examples: int, gap: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each example has its own difficulty (OUT mean); training on it adds ``gap`` to its confidence."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 3, examples)  # per-example offsets much wider than the gap: a global threshold fails
    inside = rng.random((models, examples)) < 0.5
    conf = base + gap * inside + rng.normal(0, 0.5, (models, examples))
    return conf, inside


def test_separable_members_are_found_at_low_fpr():
    conf, inside = _runs(16, 500, gap=4.0, seed=0)
    scores, labels = leave_one_out_scores(conf, inside)
    result = tpr_at_fpr(scores, labels, 1e-3)
    assert result.nonmembers > 3_000 and result.tpr > 0.9  # gap = 8 noise sds: nearly every member clears it
    offline, labels = leave_one_out_scores(conf, inside, online=False)
    assert tpr_at_fpr(offline, labels, 1e-3).tpr > 0.5
    # the per-example calibration matters: the raw confidence with one global threshold does far worse
    assert tpr_at_fpr(conf.ravel(), inside.ravel(), 1e-3).tpr < 0.2


def test_no_membership_signal_gives_tpr_near_the_fpr():
    conf, inside = _runs(16, 500, gap=0.0, seed=1)
    scores, labels = leave_one_out_scores(conf, inside)
    result = tpr_at_fpr(scores, labels, 1e-3)
    # ~4,000 members, expected TPR 0.001: more than 2 % would be a 20-sigma event
    assert result.tpr < 0.02


def test_examples_without_in_or_out_shadows_score_neutral():
    conf = np.array([[1.0, 2.0], [1.5, 2.5]])
    inside = np.array([[True, True], [False, True]])
    scores = lira_scores(np.array([3.0, 3.0]), conf, inside)
    assert scores[1] == 0.0 and scores[0] != 0.0


def test_logit_confidence_and_errors():
    assert logit_confidence(np.array([0.5]))[0] == pytest.approx(0.0)
    assert np.isfinite(logit_confidence(np.array([0.0, 1.0]))).all()
    with pytest.raises(ConfigError):
        tpr_at_fpr(np.zeros(3), np.ones(3, bool))
    with pytest.raises(ConfigError):
        leave_one_out_scores(np.zeros((1, 3)), np.zeros((1, 3), bool))

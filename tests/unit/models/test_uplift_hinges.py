"""Fixed hinge knots in the uplift model (``--knots``): the basis, the bad values refused, a kinked effect learnt
that logistic heads on the raw features miss, and a saved model with knots read back by the partner's export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedinsight.core.errors import ConfigError
from fedinsight.models.uplift import CENTRE, Hinges, UpliftNet, fit_centralized, get_weights, predicted_uplift
from fedinsight.tasks.uplift.options import UpliftOptions, parse_knots


def test_the_basis_is_the_centred_features_then_one_hinge_per_feature_and_knot():
    x = torch.tensor([[0.1, 0.6], [0.9, 0.3]])
    out = Hinges((0.25, 0.5))(x)
    expected = [[0.1 - CENTRE, 0.6 - CENTRE, 0.0, 0.0, 0.35, 0.1], [0.9 - CENTRE, 0.3 - CENTRE, 0.65, 0.4, 0.05, 0.0]]
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
    assert torch.equal(Hinges(())(x), x - CENTRE)
    assert UpliftNet(2, 3, 0, (0.25, 0.5)).base.in_features == 6


def test_knots_are_parsed_and_bad_ones_named():
    assert parse_knots("none") == () and parse_knots("") == () and parse_knots("0.2, 0.5") == (0.2, 0.5)
    for bad in ("0.5,0.2", "0,0.5", "0.5,1", "a,b", "0.5,0.5", ",".join(["0.1"] * 9)):
        with pytest.raises(ConfigError, match="--knots must be"):
            UpliftOptions(offer_costs="b=1", knots=bad)


@pytest.mark.slow
def test_a_kinked_effect_is_learnt_with_knots_and_missed_without():
    # planted (like the synthetic discount): the offer adds 0.3 x (1 - x0 / 0.5) to the conversion probability
    # below x0 = 0.5 and nothing above -- a ramp that stops
    rng = np.random.default_rng(0)  # fixed data and fixed initial weights: the comparison is deterministic
    n = 20_000
    x = rng.random((n, 2))
    arm = rng.integers(0, 2, n)

    def ramp(v: np.ndarray) -> np.ndarray:
        return 0.3 * np.clip(1.0 - v / 0.5, 0.0, 1.0)

    y = (rng.random(n) < 0.1 + arm * ramp(x[:, 0])).astype(float)
    grid = np.column_stack([np.linspace(0.01, 0.99, 99), np.full(99, 0.5)])
    want = ramp(grid[:, 0])
    errors = {}
    for knots in ((), (0.25, 0.5, 0.75)):
        model = fit_centralized(x, arm, y, 2, knots=knots)
        errors[knots] = float(np.abs(predicted_uplift(model, grid)[:, 0] - want).mean())
    # linear heads bend the logit only linearly: a mean error of several points; hinges follow the kink
    assert errors[(0.25, 0.5, 0.75)] < 0.6 * errors[()], errors


def test_a_saved_model_with_knots_is_rebuilt_by_the_export(tmp_path):
    from fedinsight.tasks.uplift.export import network
    from fedinsight.tasks.uplift.features import FEATURES

    net = UpliftNet(len(FEATURES), 3, 0, (0.3, 0.6))
    model = {"arms": ["c", "a", "b"], "hidden": 0, "knots": [0.3, 0.6],
             "weights": {k: v.tolist() for k, v in get_weights(net).items()}}
    x = np.random.default_rng(1).random((5, len(FEATURES)))
    np.testing.assert_allclose(predicted_uplift(network(model), x), predicted_uplift(net, x), atol=1e-6)
    old = {"arms": ["c", "a"], "weights": {k: v.tolist() for k, v in get_weights(UpliftNet(len(FEATURES), 2)).items()}}
    assert network(old).base.in_features == len(FEATURES)  # a model saved before knots existed still loads

"""Separate heads per arm in the uplift model (``--heads separate``): the same functions as the shared base plus
offer deltas, a customer's DP-SGD gradient on its own arm's head only, bad values refused, a saved model rebuilt."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedinsight.core.errors import ConfigError
from fedinsight.models.uplift import UpliftNet, build_model, get_weights, predicted_uplift, set_weights, uplift_loss
from fedinsight.tasks.uplift.options import UpliftOptions

KNOTS = (0.3, 0.6)


def test_separate_heads_describe_the_same_functions_as_shared_ones():
    # any shared model (base, base + delta) is a separate-heads model with heads (base, base + delta): the same
    # predictions, so the choice changes DP-SGD's path, not what the model can say
    shared = UpliftNet(4, 3, 0, KNOTS)
    with torch.no_grad():
        for p in shared.parameters():
            p.normal_()
    w = get_weights(shared)
    heads = {"arm_heads.weight": np.vstack([w["base.weight"], w["base.weight"] + w["delta.weight"]]),
             "arm_heads.bias": np.concatenate([w["base.bias"], w["base.bias"] + w["delta.bias"]])}
    separate = set_weights(UpliftNet(4, 3, 0, KNOTS, "separate"), heads)
    x = np.random.default_rng(0).random((50, 4))
    np.testing.assert_allclose(predicted_uplift(separate, x), predicted_uplift(shared, x), atol=1e-5)
    assert np.abs(predicted_uplift(shared, x)).max() > 0.01  # the comparison is not between two flat models


def test_every_arm_starts_from_the_same_head_so_no_offer_changes_anything_yet():
    net = build_model(4, 3, 0, 7, KNOTS, "separate")
    assert np.abs(predicted_uplift(net, np.random.default_rng(1).random((20, 4)))).max() < 1e-6
    assert not np.allclose(get_weights(net)["arm_heads.weight"], 0.0)  # a real (seeded) start, not zeros


def _grad_norm(net: UpliftNet, x: np.ndarray, arm: int, y: float) -> tuple[float, dict[str, torch.Tensor]]:
    net.zero_grad()
    batch = (torch.as_tensor(x, dtype=torch.float32), torch.tensor([arm]), torch.tensor([y]))
    uplift_loss(net, batch).backward()
    grads = {k: p.grad.detach().clone() for k, p in net.named_parameters()}
    return float(torch.sqrt(sum((g ** 2).sum() for g in grads.values()))), grads


def test_a_treated_customers_gradient_lands_on_its_own_head_only_and_is_smaller_than_with_shared_heads():
    # why separate heads clip less at the same clipping norm: the shared model sends a treated customer's
    # gradient to the base and to the offer's delta (norm sqrt(2) x larger)
    shared = UpliftNet(4, 3, 0, KNOTS)
    separate = UpliftNet(4, 3, 0, KNOTS, "separate")
    with torch.no_grad():  # the same function: separate heads = (base, base + 0, base + 0)
        separate.arm_heads.weight.copy_(shared.base.weight.expand(3, -1))
        separate.arm_heads.bias.copy_(shared.base.bias.expand(3))
    x = np.random.default_rng(2).random((1, 4))
    norm_shared, _ = _grad_norm(shared, x, arm=2, y=1.0)
    norm_separate, grads = _grad_norm(separate, x, arm=2, y=1.0)
    assert torch.count_nonzero(grads["arm_heads.weight"][:2]) == 0 and grads["arm_heads.bias"][:2].abs().sum() == 0
    assert norm_separate == pytest.approx(norm_shared / np.sqrt(2), rel=1e-5)


def test_unknown_heads_are_refused_with_the_choices():
    with pytest.raises(ConfigError, match="--heads must be one of shared, separate"):
        UpliftOptions(offer_costs="b=1", heads="tlearner")


def test_a_saved_model_with_separate_heads_is_rebuilt_by_the_export():
    from fedinsight.tasks.uplift.export import network
    from fedinsight.tasks.uplift.features import FEATURES

    net = build_model(len(FEATURES), 3, 0, 3, KNOTS, "separate")
    with torch.no_grad():
        net.arm_heads.weight.add_(torch.randn_like(net.arm_heads.weight))
    model = {"arms": ["c", "a", "b"], "hidden": 0, "knots": list(KNOTS), "heads": "separate",
             "weights": {k: v.tolist() for k, v in get_weights(net).items()}}
    x = np.random.default_rng(3).random((5, len(FEATURES)))
    np.testing.assert_allclose(predicted_uplift(network(model), x), predicted_uplift(net, x), atol=1e-6)

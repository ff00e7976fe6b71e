"""The tent basis of the uplift model (``--basis tent``): local hat functions that describe every hinge model's
function exactly, the release manifest's shapes following the basis, the option kept in the saved model and read
back by the partner's export (an older file without it read as hinges), and bad values refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fedinsight.core.errors import ConfigError
from fedinsight.models.uplift import CENTRE, Tents, UpliftNet, build_model, get_weights, set_weights
from fedinsight.tasks.uplift.features import FEATURES
from fedinsight.tasks.uplift.options import UpliftOptions

KNOTS = (0.2, 0.45, 0.8)  # uneven on purpose: each tent has its own rising and falling slope


def test_each_feature_has_one_tent_per_grid_point_at_most_two_active_summing_to_one():
    x = torch.as_tensor(np.random.default_rng(0).random((200, 3)), dtype=torch.float32)
    x[0] = torch.tensor([0.0, 0.45, 1.0])  # the ends and a knot: exactly one tent each, at 1
    out = Tents(KNOTS)(x).view(200, 3, len(KNOTS) + 2)
    np.testing.assert_allclose(out.sum(dim=2).numpy(), 1.0, atol=1e-6)
    assert int((out > 0).sum(dim=2).max()) == 2 and float(out.min()) >= 0.0
    np.testing.assert_allclose(out[0].numpy(), [[1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]], atol=1e-6)
    # between two grid points the two tents interpolate linearly: 0.3 is 40 % of the way from 0.2 to 0.45
    np.testing.assert_allclose(Tents(KNOTS)(torch.tensor([[0.3]])).numpy(), [[0, 0.6, 0.4, 0, 0]], atol=1e-6)


def _random(net: UpliftNet, seed: int) -> UpliftNet:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    return net


@pytest.mark.parametrize("heads", ["separate", "shared"])
def test_a_tent_model_says_exactly_what_any_hinge_model_says(heads):
    # the tents span the same continuous functions, linear between the same knots, as the hinges with the bias:
    # a tent weight is the hinge model's per-feature function at that tent's grid point
    n_features, n_arms = 4, 3
    hinge = _random(UpliftNet(n_features, n_arms, 0, KNOTS, heads), seed=1)
    tent = UpliftNet(n_features, n_arms, 0, KNOTS, heads, "tent")
    grid = np.asarray((0.0, *KNOTS, 1.0))
    columns = np.concatenate([grid[:, None] - CENTRE, np.maximum(grid[:, None] - np.asarray(KNOTS), 0.0)], axis=1)
    w = get_weights(hinge)
    converted = {}
    for layer in ("arm_heads", "base", "delta"):
        if f"{layer}.weight" not in w:
            continue
        # (outputs, features + features x knots): the centred features, then each feature's hinges (feature-major,
        # as test_uplift_hinges checks); per[o, f, j] is output o's weight on feature f's column j (0: centred)
        wh = w[f"{layer}.weight"].astype(np.float64)
        hinges = wh[:, n_features:].reshape(wh.shape[0], n_features, len(KNOTS))
        per = np.concatenate([wh[:, :n_features, None], hinges], axis=2)
        converted[f"{layer}.weight"] = np.einsum("ofj,gj->ofg", per, columns).reshape(wh.shape[0], -1)
        converted[f"{layer}.bias"] = w[f"{layer}.bias"]
    set_weights(tent, {k: v.astype(np.float32) for k, v in converted.items()})
    x = torch.as_tensor(np.random.default_rng(2).random((500, n_features)), dtype=torch.float32)
    with torch.no_grad():
        hinge_logits, tent_logits = hinge(x).numpy(), tent(x).numpy()
    assert np.abs(hinge_logits).max() > 1.0  # a model that bends, not a flat one
    np.testing.assert_allclose(tent_logits, hinge_logits, atol=1e-5)


def test_the_manifest_follows_the_basis():
    from fedinsight.tasks.uplift.server import manifest

    def shapes(basis: str) -> dict:
        options = UpliftOptions(offer_costs="a=1,b=2", knots="0.2,0.4,0.6,0.8", basis=basis)
        (train,) = [r for r in manifest(options, "uplift").releases if r.kind == "arrays"]
        return dict(train.fields)

    assert shapes("hinge")["arm_heads.weight"] == (3, len(FEATURES) * 5)
    assert shapes("tent")["arm_heads.weight"] == (3, len(FEATURES) * 6)


def _saved(tmp_path, options: UpliftOptions, net: UpliftNet, **edit) -> dict:
    from fedinsight.tasks.uplift.server import model as model_file

    summary = {"campaign": options.campaign, "weights": {k: v.tolist() for k, v in get_weights(net).items()}}
    saved = {**model_file(summary, options), **edit}
    path = tmp_path / "uplift_model.json"
    path.write_text(json.dumps(saved))
    return path


def test_the_basis_is_saved_in_the_model_file_and_the_export_rebuilds_the_tent_model(tmp_path):
    from fedinsight.models.uplift import predicted_uplift
    from fedinsight.tasks.uplift.export import load_model, network

    options = UpliftOptions(offer_costs="a=1,b=2", basis="tent")
    net = _random(build_model(len(FEATURES), 3, 0, 0, options.knot_values, options.heads, "tent"), seed=4)
    loaded = load_model(_saved(tmp_path, options, net))
    assert loaded["basis"] == "tent"
    x = np.random.default_rng(5).random((20, len(FEATURES)))
    np.testing.assert_allclose(predicted_uplift(network(loaded), x), predicted_uplift(net, x), atol=1e-6)


def test_a_model_file_from_before_the_basis_option_is_read_as_hinges(tmp_path):
    from fedinsight.models.uplift import predicted_uplift
    from fedinsight.tasks.uplift.export import load_model, network

    options = UpliftOptions(offer_costs="a=1,b=2")
    net = _random(build_model(len(FEATURES), 3, 0, 0, options.knot_values, options.heads), seed=6)
    path = _saved(tmp_path, options, net)
    old = json.loads(path.read_text())
    del old["basis"]
    path.write_text(json.dumps(old))
    x = np.random.default_rng(7).random((20, len(FEATURES)))
    np.testing.assert_allclose(predicted_uplift(network(load_model(path)), x), predicted_uplift(net, x), atol=1e-6)


def test_unknown_or_mismatched_bases_are_refused_by_name(tmp_path):
    from fedinsight.tasks.uplift.export import load_model

    with pytest.raises(ConfigError, match=r"--basis must be one of hinge, tent \(got 'spline'\)"):
        UpliftOptions(offer_costs="b=1", basis="spline")
    options = UpliftOptions(offer_costs="a=1,b=2")
    net = build_model(len(FEATURES), 3, 0, 0, options.knot_values, options.heads)
    with pytest.raises(ConfigError, match="basis='spline' is not a basis this fedinsight knows"):
        load_model(_saved(tmp_path, options, net, basis="spline"))
    with pytest.raises(ConfigError, match="do not fit its 3 arms with heads=separate and basis=tent"):
        load_model(_saved(tmp_path, options, net, basis="tent"))  # hinge weights under a tent label


@pytest.mark.parametrize("knots", [[0.0, 0.4, 0.6, 0.8], [0.2, 0.4, 0.6, 1.0], [0.2, 0.4, 0.4, 0.8],
                                   [0.8, 0.6, 0.4, 0.2], "0.2,0.4,0.6,0.8"])
def test_a_model_file_whose_knots_would_make_a_broken_basis_is_refused(tmp_path, knots):
    # the same number of knots keeps the weights' shapes, so only the knot check stands between such a file and
    # NaN basis columns (a tent at a knot of 0 or 1 divides by zero) or columns that do not sum to one
    from fedinsight.tasks.uplift.export import load_model

    options = UpliftOptions(offer_costs="a=1,b=2", basis="tent")
    net = build_model(len(FEATURES), 3, 0, 0, options.knot_values, options.heads, "tent")
    with pytest.raises(ConfigError, match="its knots .* are not up to 8 increasing numbers strictly between 0 and 1"):
        load_model(_saved(tmp_path, options, net, knots=knots))


def test_the_options_spell_the_bases_as_the_model_does():
    from fedinsight.models import uplift as model
    from fedinsight.tasks.uplift import options

    assert options.BASES == model.BASES

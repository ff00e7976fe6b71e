"""The uplift task's parts: options and bad input, the audience, the policy's choice, the manifest's charge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError
from fedinsight.data.synth_uplift import best_offer, effects
from fedinsight.federation.delta import provisional
from fedinsight.privacy.ledger import compose_epsilon
from fedinsight.tasks.uplift import client, policy
from fedinsight.tasks.uplift.features import audience
from fedinsight.tasks.uplift.options import UpliftOptions
from fedinsight.tasks.uplift.server import manifest


def test_costs_are_parsed_and_bad_ones_named():
    options = UpliftOptions(offer_costs="discount=4, gift=3")
    assert options.costs == {"discount": 4.0, "gift": 3.0} and options.arms == ("control", "discount", "gift")
    for bad, says in (("discount", "ARM=COST"), ("discount=-1", "ARM=COST"), ("a=1,a=2", "twice"),
                      ("control=1", "control arm")):
        with pytest.raises(ConfigError, match=says):
            UpliftOptions(offer_costs=bad)
    with pytest.raises(ConfigError, match="--offer-costs"):
        UpliftOptions().require_costs()  # missing costs: said before any partner is contacted
    with pytest.raises(ConfigError, match="--tiers"):
        UpliftOptions(offer_costs="b=1", tiers="900,100")


def _events(rows):  # noqa: ANN001, ANN202
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "campaign", "channel", "stage", "arm"])


def test_audience_reads_arms_conversions_and_features_before_exposure():
    ev = _events([("c1", "2025-03-01", "spring", "email", "exposure", "A"),
                  ("c1", "2025-03-02", "spring", "email", "convert", "A"),
                  ("c2", "2025-03-01", "spring", "email", "exposure", "B"),
                  ("c2", "2025-02-01", "spring", "email", "convert", "B"),  # before its exposure: not a conversion
                  ("c3", "2025-03-01", "other", "email", "exposure", "A")])  # another campaign: not in the job
    tx = pd.DataFrame({"customer_id": ["c1", "c1", "c2"], "timestamp": ["2025-01-01", "2025-04-01", "2024-01-01"],
                       "amount": [50.0, 999.0, 20.0]})
    who = audience(ev, tx, "spring", ("A", "B"))
    assert list(who.ids) == ["c1", "c2"] and who.arm.tolist() == [0, 1] and who.converted.tolist() == [1.0, 0.0]
    assert who.order_value.tolist() == [50.0, 20.0]  # the purchase after exposure is not a feature
    assert who.spend_year.tolist() == [50.0, 0.0]  # c2's purchase is more than a year before exposure
    assert who.orders.tolist() == [1.0, 1.0]  # all purchases before exposure, however old
    assert ((who.x >= 0) & (who.x <= 1)).all()


def test_a_campaign_with_a_missing_arm_or_no_exposures_is_refused_with_what_to_fix():
    ev = _events([("c1", "2025-03-01", "spring", "email", "exposure", "A")])
    with pytest.raises(ConfigError, match="arm.s. B have no exposures"):
        audience(ev, None, "spring", ("A", "B"))
    with pytest.raises(ConfigError, match="no exposures"):
        audience(ev, None, "autumn", ("A", "B"))
    with pytest.raises(ConfigError, match="'arm' column"):
        audience(ev.drop(columns="arm"), None, "spring", ("A", "B"))


def test_the_policy_picks_the_largest_positive_value_or_none():
    uplift = np.array([[0.10, 0.02], [0.01, 0.10], [0.01, 0.01]])
    value = np.array([50.0, 50.0, 50.0])
    costs = np.array([4.0, 3.0])
    # values: [1, -2], [-3.5, 2], [-3.5, -2.5]
    assert policy.choose(uplift, value, costs).tolist() == [1, 2, 0]
    assert policy.tiers(np.array([0.0, 299.9, 300.0, 1200.0]), (300.0, 1200.0)).tolist() == [0, 0, 1, 2]
    assert policy.counts(np.array([1, 2, 0]), np.array([0, 2, 2]), 2).tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 1]
    truth = best_offer({"d": uplift[:, 0], "g": uplift[:, 1]}, value, {"d": 4.0, "g": 3.0})
    assert truth.tolist() == ["d", "g", ""]  # the benchmark's truth policy applies the same rule


def test_the_expected_order_value_is_the_own_mean_order_shrunk_towards_the_public_prior():
    ev = _events([("c1", "2025-03-01", "spring", "email", "exposure", "A"),
                  ("c2", "2025-03-01", "spring", "email", "exposure", "B"),
                  ("c3", "2025-03-01", "spring", "email", "exposure", "B")])
    tx = pd.DataFrame({"customer_id": ["c1", "c1", "c1", "c1", "c2", "c2"],
                       "timestamp": ["2024-06-01", "2024-09-01", "2025-01-01", "2025-05-01", "2025-02-01",
                                     "2025-02-02"],
                       "amount": [30.0, 60.0, 90.0, 500.0, 400.0, 200.0]})
    who = audience(ev, tx, "spring", ("A", "B"))  # c1: 3 orders of mean 60; c2: 2 of mean 300; c3: none
    assert who.orders.tolist() == [3.0, 2.0, 0.0] and who.order_value.tolist() == [60.0, 300.0, 0.0]
    options = UpliftOptions(offer_costs="B=1", order_value_cap=200.0)  # prior: 0.4 x the cap, 8 orders
    assert options.prior_order_value == 80.0
    # c1 (3 x 60 + 8 x 80) / 11 = 74.5; c2 capped (2 x 200 + 8 x 80) / 10 = 104; c3 the prior alone
    assert options.expected_order_value(who).tolist() == pytest.approx([820.0 / 11.0, 104.0, 80.0])
    own = UpliftOptions(offer_costs="B=1", order_value_cap=200.0, order_value_weight=0.0)
    assert own.expected_order_value(who).tolist() == [60.0, 200.0, 0.0]  # no shrinking: c3 is worth nothing
    assert policy.expected_order_value(who.order_value, who.orders, 200.0, 80.0, 1.0).tolist() == [65.0, 160.0, 80.0]


def test_planted_effects_depend_on_tier_and_price_sensitivity():
    lam = np.array([1.0, 1.0, 24.0])
    e = effects(lam, np.array([100.0, 100.0, 2000.0]), np.array([0.9, 0.1, 0.9]))
    assert e["tier"].tolist() == [0, 0, 2]
    assert e["discount"][0] > e["discount"][1] > 0 and e["discount"][2] < e["discount"][0] / 4
    assert e["gift"][2] > e["gift"][0]


def test_the_charge_is_the_manifest_and_composes_to_the_jobs_epsilon():
    options = UpliftOptions(offer_costs="discount=4,gift=3", rounds=3)
    m = manifest(options, "uplift")
    assert [r.reply for r in m.private()] == ["train", "evaluate", "policy", "economics"]
    assert m.private()[0].count == 3
    planned = compose_epsilon(m.events(), provisional(options.delta))
    assert planned <= options.epsilon * (1 + 1e-6) and planned > 0.95 * options.epsilon
    assert compose_epsilon(client.events(options), provisional(options.delta)) == pytest.approx(planned, rel=1e-9)
    assert isinstance(m.private()[1].event, dp_event.GaussianDpEvent)
    assert client.eval_length(2) == m.private()[1].fields["qini"][0]


def test_campaign_economics_from_exact_totals_and_intervals_that_widen_with_noise():
    from fedinsight.tasks.uplift import economics

    # control: 1,000 customers, 100 convert; offer: 1,000 customers, 150 convert, their usual orders sum to 7,500
    totals = np.array([1000.0, 100.0, 100 * 40 / 200, 1000.0, 150.0, 7_500 / 200])
    out = economics.summary(totals, ("B",), {"B": 2.0}, 200.0, noise_sd=0.0)["B"]
    assert out["incremental_conversions"]["value"] == pytest.approx(50.0)
    assert out["incremental_revenue"]["value"] == pytest.approx(50.0 * 50.0)  # 50 extra x mean usual order 50
    assert out["cost"]["value"] == pytest.approx(2_000.0) and out["cpa"]["value"] == pytest.approx(40.0)
    assert out["roi"]["value"] == pytest.approx((2_500 - 2_000) / 2_000)
    lo, hi = out["incremental_conversions"]["ci95"]
    assert lo < 50 < hi and hi - lo < 60  # binomial sampling alone: sd ~ 21 for the difference
    noisy = economics.summary(totals, ("B",), {"B": 2.0}, 200.0, noise_sd=30.0)["B"]["incremental_conversions"]
    assert noisy["ci95"][1] - noisy["ci95"][0] > hi - lo  # the DP noise widens the interval
    # an arm whose noisy count is under the minimum group size: no figure for the offers compared with it
    small = economics.summary(np.array([1000.0, 100.0, 20.0, 12.0, 3.0, 0.6]), ("B",), {"B": 2.0}, 200.0,
                              noise_sd=0.0, min_group_size=20)["B"]
    assert small["suppressed"] is True and "incremental_conversions" not in small and "roi" not in small
    assert out["suppressed"] is False
    who = audience(_events([("c1", "2025-03-01", "s", "e", "exposure", "A"), ("c2", "2025-03-01", "s", "e",
                            "exposure", "B"), ("c2", "2025-03-02", "s", "e", "convert", "B")]),
                   pd.DataFrame({"customer_id": ["c2"], "timestamp": ["2025-01-01"], "amount": [500.0]}), "s",
                   ("A", "B"))
    assert economics.arm_totals(who, 2, 200.0).tolist() == [1, 0, 0, 1, 1, 1.0]  # the order capped at 200


def test_the_released_model_is_the_moving_average_of_the_global_models():
    from fedinsight.models.uplift import moving_average

    first = moving_average(None, {"w": np.array([1.0, 2.0])}, 0.8)
    assert first["w"].tolist() == [1.0, 2.0]
    assert moving_average(first, {"w": np.array([6.0, 2.0])}, 0.8)["w"].tolist() == pytest.approx([2.0, 2.0])


def test_a_tail_average_is_the_plain_mean_of_the_last_rounds_models_and_without_a_tail_the_moving_average():
    from fedinsight.models.uplift import ReleasedAverage, tail_start

    assert tail_start(30, 0.0) == 0 and tail_start(30, 0.5) == 16 and tail_start(30, 1.0) == 1
    assert tail_start(30, 0.001) == 30  # at least the last round
    tail = ReleasedAverage(4, decay=0.9, tail=0.5)
    ema = ReleasedAverage(4, decay=0.5)
    for server_round, w in enumerate([100.0, 50.0, 3.0, 5.0], start=1):
        tail.add(server_round, {"w": np.array([w])})
        ema.add(server_round, {"w": np.array([w])})
        if server_round < 3:
            assert tail.value is None  # rounds 1-2 are outside the last half
    assert tail.value["w"].tolist() == pytest.approx([4.0])  # (3 + 5) / 2: the decay plays no part
    assert ema.value["w"].tolist() == pytest.approx([0.5 * (0.5 * (0.5 * 100 + 25) + 1.5) + 2.5])


@pytest.mark.parametrize("key, value", [("costs", {}), ("tier_edges", [1.0]), ("order_value_cap", 0),
                                        ("costs", {"B": "free"})])
def test_an_offer_model_with_a_broken_policy_is_one_clear_error(tmp_path, key, value):
    import json

    from fedinsight.core.errors import ConfigError
    from fedinsight.models.uplift import UpliftNet, get_weights
    from fedinsight.tasks.uplift.export import KIND, load_model
    from fedinsight.tasks.uplift.features import FEATURES

    model = {"kind": KIND, "arms": ["A", "B"], "features": [{"name": n, "cap": c} for n, c in FEATURES],
             "weights": {k: v.tolist() for k, v in get_weights(UpliftNet(len(FEATURES), 2, 0)).items()},
             "costs": {"B": 2.0}, "tier_edges": [100.0, 500.0], "order_value_cap": 200.0}
    path = tmp_path / "uplift_model.json"
    path.write_text(json.dumps(model))
    assert load_model(path)["costs"] == {"B": 2.0}  # the well-formed model loads
    path.write_text(json.dumps({**model, key: value}))
    with pytest.raises(ConfigError, match="offer costs, value-tier edges or order-value cap"):
        load_model(path)


def test_the_clipping_norm_follows_the_heads_unless_given():
    """Shared heads at the separate heads' 1.5 clip most converting customers (docs/uplift.md): each parametrisation
    gets its own default, and a norm the user gives wins; the plan and the manifest say the norm in force."""
    base = {"campaign": "c", "control": "A", "offer-costs": "B=1"}
    separate = UpliftOptions.from_run_config(base)
    shared = UpliftOptions.from_run_config({**base, "heads": "shared"})
    given = UpliftOptions.from_run_config({**base, "heads": "shared", "max-grad-norm": 3.0})
    assert (separate.clip, shared.clip, given.clip) == (1.5, 2.0, 3.0)
    assert [o.plan().max_grad_norm for o in (separate, shared, given)] == [1.5, 2.0, 3.0]
    train = [r for r in manifest(shared, "uplift").releases if r.kind == "arrays"]
    assert len(train) == 1 and "clipped to L2 2," in train[0].sensitivity


def test_a_model_whose_heads_and_weights_disagree_is_refused_by_name(tmp_path):
    """The export reads ``heads`` from the model file: separate-heads weights under ``heads=shared`` (or no field, an
    older file's default), or a parametrisation this version does not know, are one ConfigError naming it."""
    import json

    from fedinsight.core.errors import ConfigError
    from fedinsight.models.uplift import HEADS as MODEL_HEADS
    from fedinsight.models.uplift import UpliftNet, get_weights
    from fedinsight.tasks.uplift.export import KIND, load_model
    from fedinsight.tasks.uplift.features import FEATURES
    from fedinsight.tasks.uplift.options import HEADS

    assert HEADS == MODEL_HEADS  # spelt out twice (options must not import torch): kept equal here
    weights = {k: v.tolist() for k, v in get_weights(UpliftNet(len(FEATURES), 2, 0, (), "separate")).items()}
    model = {"kind": KIND, "arms": ["A", "B"], "features": [{"name": n, "cap": c} for n, c in FEATURES],
             "weights": weights, "costs": {"B": 2.0}, "tier_edges": [100.0, 500.0], "order_value_cap": 200.0,
             "knots": [], "heads": "separate"}
    path = tmp_path / "uplift_model.json"
    path.write_text(json.dumps(model))
    assert load_model(path)["heads"] == "separate"
    for heads, match in (("shared", "heads=shared"), (None, "heads=shared"), ("tlearner", "heads='tlearner'")):
        broken = {k: v for k, v in model.items() if k != "heads"} if heads is None else {**model, "heads": heads}
        path.write_text(json.dumps(broken))
        with pytest.raises(ConfigError, match=match):
            load_model(path)

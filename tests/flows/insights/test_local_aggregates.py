"""Partner-side aggregates: equal to plain pandas group-bys, and one customer moves them by at most L1/L2."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import FUNNEL_STAGES, PartnerData
from fedinsight.data.synth import CAMPAIGN_CHANNELS, SynthConfig, generate_partner_frames
from fedinsight.tasks.insights.aggregates import compute
from fedinsight.tasks.insights.customer_features import LIFECYCLE_STAGES, RFM_SEGMENTS, FeatureRules, customer_features

AS_OF = "2026-01-01"
CHANNELS = list(CAMPAIGN_CHANNELS)
QUERIES = [
    ("segment_profile", {"by": "rfm_segment"}),
    ("segment_profile", {"by": "lifecycle_stage"}),
    ("ltv_tiers", {}),
    ("funnel", {"by": "channel", "channels": CHANNELS, "max_channels_per_customer": 2}),
    ("funnel", {"by": "rfm_segment"}),
    ("ab_test", {"campaigns": ["campaign-1", "campaign-2"]}),
    ("golden_hours", {"by": "rfm_segment", "max_hours_per_customer": 2, "max_weekdays_per_customer": 1}),
    ("golden_hours", {"by": "lifecycle_stage", "max_slots_per_customer": 4, "heatmap": True}),
    ("golden_hours", {"by": "all", "heatmap": False}),
    ("channel_response", {"by": "lifecycle_stage", "channels": CHANNELS[:3], "max_channels_per_customer": 1}),
    ("group_by", {"table": "transactions", "group_by": ["channel", "rfm_segment"],
                  "keys": {"channel": ["store", "web"]}, "value": "amount", "aggregates": ["count", "sum"],
                  "bounds": [0.0, 200.0], "max_rows_per_customer": 5}),
    ("group_by", {"table": "customers", "group_by": ["region"], "keys": {"region": ["north", "south"]},
                  "value": "age", "aggregates": ["mean"], "bounds": [18.0, 80.0]}),
]


@pytest.fixture(scope="module")
def partner() -> PartnerData:
    frames, _ = generate_partner_frames(SynthConfig(customers=4_000, partners=1, seed=11))
    return PartnerData("p", **frames["partner-0"])


@pytest.fixture(scope="module")
def features(partner):
    return customer_features(partner, FeatureRules(as_of=AS_OF))


def _consenting(partner: PartnerData) -> pd.DataFrame:
    c = partner.customers
    return c[c["consent"]].reset_index(drop=True)


def _reference_rfm(partner: PartnerData) -> pd.Series:
    """RFM segment per customer, written the obvious way with pandas (independent of the module)."""
    as_of = pd.Timestamp(AS_OF)
    tx = partner.transactions[partner.transactions["timestamp"] < as_of]
    days = (as_of - tx["timestamp"]).dt.total_seconds() / 86_400
    ids = _consenting(partner)["customer_id"]
    f365 = tx[days <= 365].groupby("customer_id").size().reindex(ids, fill_value=0)
    recency = days.groupby(tx["customer_id"]).min().reindex(ids)
    seg = np.select(
        [(recency <= 30) & (f365 >= 15), (recency <= 90) & (f365 >= 8), recency <= 90, recency <= 365],
        ["champions", "loyal", "potential", "at_risk"], "hibernating")
    return pd.Series(seg, index=ids)


def test_segment_profile_matches_pandas(partner, features):
    seg = _reference_rfm(partner)
    agg = compute("segment_profile", features, {"by": "rfm_segment"}).by_name()
    expected = seg.value_counts().reindex(RFM_SEGMENTS, fill_value=0).to_numpy()
    np.testing.assert_array_equal(agg["customers"].values, expected)
    tx = partner.transactions
    as_of = pd.Timestamp(AS_OF)
    recent = tx[(tx["timestamp"] < as_of) & (tx["timestamp"] >= as_of - pd.Timedelta(days=365))]
    spend = recent.groupby("customer_id")["amount"].sum().reindex(seg.index, fill_value=0).clip(0, 5000)
    np.testing.assert_allclose(agg["spend"].values, spend.groupby(seg).sum().reindex(RFM_SEGMENTS, fill_value=0))
    buys = tx.groupby("customer_id").size().reindex(seg.index, fill_value=0)
    np.testing.assert_array_equal(agg["repurchasers"].values,
                                  (buys >= 2).groupby(seg).sum().reindex(RFM_SEGMENTS, fill_value=0))


def test_funnel_and_ab_match_pandas(partner, features):
    ev = partner.events.merge(_consenting(partner)[["customer_id"]], on="customer_id")
    by_channel = compute("funnel", features, {"by": "channel", "channels": CHANNELS}).by_name()["customers"]
    expected = (ev.groupby(["channel", "stage"])["customer_id"].nunique().unstack()
                .reindex(index=CHANNELS, columns=list(FUNNEL_STAGES), fill_value=0))
    np.testing.assert_array_equal(by_channel.values[:-1], expected.to_numpy())  # last row is "other": empty
    assert by_channel.values[-1].sum() == 0
    seg = _reference_rfm(partner)
    by_seg = compute("funnel", features, {"by": "rfm_segment"}).by_name()["customers"]
    expected = (ev.assign(seg=ev["customer_id"].map(seg)).groupby(["seg", "stage"])["customer_id"].nunique()
                .unstack().reindex(index=list(RFM_SEGMENTS), columns=list(FUNNEL_STAGES), fill_value=0))
    np.testing.assert_array_equal(by_seg.values, expected.to_numpy())

    ab = compute("ab_test", features, {"campaigns": ["campaign-1", "campaign-2"]}).by_name()
    exposed = ev[ev["stage"] == "exposure"].groupby(["campaign", "arm"])["customer_id"].nunique().unstack()
    np.testing.assert_array_equal(ab["exposed"].values, exposed.to_numpy())
    converted = ev[ev["stage"] == "convert"].groupby(["campaign", "arm"])["customer_id"].nunique().unstack()
    np.testing.assert_array_equal(ab["converted"].values, converted.to_numpy())


def test_golden_hours_without_cap_match_pandas(partner, features):
    ev = partner.events.merge(_consenting(partner)[["customer_id"]], on="customer_id")
    ev = ev[ev["stage"] != "exposure"]
    agg = compute("golden_hours", features, {"by": "all", "max_hours_per_customer": 24,
                                             "max_weekdays_per_customer": 7}).by_name()
    hours = ev.groupby(ev["timestamp"].dt.hour)["customer_id"].nunique().reindex(range(24), fill_value=0)
    np.testing.assert_array_equal(agg["customers_by_hour"].values[0], hours.to_numpy())
    days = ev.groupby(ev["timestamp"].dt.day_of_week)["customer_id"].nunique().reindex(range(7), fill_value=0)
    np.testing.assert_array_equal(agg["customers_by_weekday"].values[0], days.to_numpy())


def test_golden_hours_heatmap_without_cap_matches_pandas(partner, features):
    """The joint (weekday, hour) counts: customers per slot, keyed "mon-09", equal to a plain group-by."""
    ev = partner.events.merge(_consenting(partner)[["customer_id"]], on="customer_id")
    ev = ev[(ev["stage"] != "exposure") & (ev["timestamp"] < pd.Timestamp(AS_OF))]
    agg = compute("golden_hours", features, {"by": "all", "max_slots_per_customer": 168}).by_name()
    slots = agg["customers_by_slot"]
    assert slots.dims[1][0] == "slot" and slots.dims[1][1][:2] == ("mon-00", "mon-01")
    assert len(slots.dims[1][1]) == 168 and slots.dims[1][1][-1] == "sun-23"
    key = ev["timestamp"].dt.day_of_week * 24 + ev["timestamp"].dt.hour
    expected = ev.groupby(key)["customer_id"].nunique().reindex(range(168), fill_value=0)
    np.testing.assert_array_equal(slots.values[0], expected.to_numpy())
    assert slots.values.sum() > 0


def _customer_with_many_events(partner: PartnerData) -> tuple[PartnerData, str]:
    """``partner`` plus one new consenting customer who clicks at 300 distinct hours (every slot is hit)."""
    template = _consenting(partner).iloc[[0]].copy()
    cid = "heavy-clicker"
    template["customer_id"] = cid
    customers = pd.concat([partner.customers, template], ignore_index=True)
    stamps = pd.Timestamp("2025-09-01", tz=partner.events["timestamp"].dt.tz) + pd.to_timedelta(
        np.arange(300) * 5, unit="h")  # every 5 hours (coprime to 168): all 168 slots, all before AS_OF
    row = partner.events.iloc[0]
    events = pd.DataFrame({col: [row[col]] * stamps.size for col in partner.events.columns})
    events = events.assign(customer_id=cid, timestamp=stamps, stage="click")
    if "event_id" in events:
        events["event_id"] = [f"heavy-{i}" for i in range(stamps.size)]
    events = pd.concat([partner.events, events.astype(partner.events.dtypes.to_dict())], ignore_index=True)
    return PartnerData("p", customers=customers, transactions=partner.transactions, events=events), cid


@pytest.mark.parametrize(("k_h", "k_w", "k_s", "heatmap"), [(3, 2, 3, True), (1, 7, 10, True), (3, 2, 3, False)])
def test_golden_hours_bounds_cover_a_customer_with_many_events(partner, k_h, k_w, k_s, heatmap):
    """Privacy-critical: the declared L1/L2 include the heatmap's k_s, and are attained by a heavy customer.

    The customer responds in 300 distinct hours, so without capping they would add to every slot; with
    the caps they move hours by exactly k_h, weekdays by k_w and slots by k_s -- each measure within its
    own cap, and the whole vector by exactly the declared bounds (so the bounds are neither exceeded
    nor the old ones that forgot the heatmap).
    """
    params = {"by": "rfm_segment", "max_hours_per_customer": k_h, "max_weekdays_per_customer": k_w,
              "max_slots_per_customer": k_s, "heatmap": heatmap}
    with_heavy, cid = _customer_with_many_events(partner)
    full = compute("golden_hours", customer_features(with_heavy, FeatureRules(as_of=AS_OF)), params)
    reduced = compute("golden_hours", customer_features(_without(with_heavy, cid), FeatureRules(as_of=AS_OF)), params)
    caps = {"customers_by_hour": k_h, "customers_by_weekday": k_w}
    if heatmap:
        caps["customers_by_slot"] = k_s
    assert set(full.by_name()) == set(caps)
    for name, cap in caps.items():
        diff = full.by_name()[name].values - reduced.by_name()[name].values
        assert diff.min() >= 0 and diff.max() <= 1  # at most once per cell
        assert diff.sum() == cap, name  # the heavy customer reaches the cap of every measure
    expected_l1 = k_h + k_w + (k_s if heatmap else 0)
    assert full.l1 == expected_l1 and full.l2 == pytest.approx(np.sqrt(expected_l1))
    diff = full.vector() - reduced.vector()
    assert np.abs(diff).sum() == pytest.approx(full.l1)  # attained: the bound is exactly tight
    assert np.sqrt((diff**2).sum()) == pytest.approx(full.l2)


def test_group_by_counts_and_clamped_sums(partner, features):
    params = {"table": "transactions", "group_by": ["channel"], "keys": {"channel": ["store", "web", "app"]},
              "value": "amount", "aggregates": ["mean"], "bounds": [0.0, 100.0], "max_rows_per_customer": 1000}
    agg = compute("group_by", features, params).by_name()
    tx = partner.transactions.merge(_consenting(partner)[["customer_id"]], on="customer_id")
    tx = tx[tx["timestamp"] < pd.Timestamp(AS_OF)]
    g = tx.assign(amount=tx["amount"].clip(0, 100)).groupby("channel")
    keys = ["store", "web", "app"]
    np.testing.assert_array_equal(agg["count"].values[:3], g.size().reindex(keys).to_numpy())
    np.testing.assert_allclose(agg["sum"].values[:3], g["amount"].sum().reindex(keys).to_numpy())
    np.testing.assert_array_equal(agg["customers"].values[:3], g["customer_id"].nunique().reindex(keys).to_numpy())
    capped = compute("group_by", features, {**params, "max_rows_per_customer": 3}).by_name()
    assert capped["count"].values.sum() == tx.groupby("customer_id").size().clip(upper=3).sum()


def _without(partner: PartnerData, customer: str) -> PartnerData:
    tables = {name: frame[frame["customer_id"] != customer] for name, frame in partner.tables().items()
              if name != "items"}
    return PartnerData("p", **tables)


def _heaviest(partner: PartnerData) -> list[str]:
    ids = [partner.transactions["customer_id"].value_counts().index[0],
           partner.events["customer_id"].value_counts().index[0]]
    consenting = _consenting(partner)["customer_id"]
    return list(dict.fromkeys([*ids, *consenting.sample(4, random_state=0)]))


@pytest.mark.parametrize(("kind", "params"), QUERIES,
                         ids=[f"{k}-{p.get('by', p.get('table', ''))}" for k, p in QUERIES])
def test_one_customer_moves_a_query_by_at_most_its_sensitivity(partner, features, kind, params):
    """The DP contract: removing one customer's rows changes the normalised vector by <= L1 and <= L2."""
    full = compute(kind, features, params)
    worst_l1 = 0.0
    for customer in _heaviest(partner):
        reduced = compute(kind, customer_features(_without(partner, customer), FeatureRules(as_of=AS_OF)), params)
        diff = full.vector() - reduced.vector()
        assert np.abs(diff).sum() <= full.l1 + 1e-9
        assert np.sqrt((diff**2).sum()) <= full.l2 + 1e-9
        worst_l1 = max(worst_l1, np.abs(diff).sum())
    assert worst_l1 > 0  # the check is not vacuous: some customer does move the aggregate


def test_consent_and_declared_keys(partner):
    data = PartnerData("p", customers=partner.customers.assign(consent=False), transactions=partner.transactions,
                       events=partner.events)
    f = customer_features(data, FeatureRules(as_of=AS_OF))
    assert f.n == 0 and compute("funnel", f, {"by": "rfm_segment"}).vector().sum() == 0
    f = customer_features(partner, FeatureRules(as_of=AS_OF, require_consent=False))
    assert f.n == len(partner.customers)
    # a channel that is not declared is counted under "other", not dropped and not named
    agg = compute("funnel", f, {"by": "channel", "channels": ["email"]}).by_name()["customers"]
    assert agg.dims[0][1] == ("email", "other") and agg.values[1, 0] > 0


def test_partner_without_events_contributes_zeros(partner):
    data = PartnerData("p", customers=partner.customers, transactions=partner.transactions)
    f = customer_features(data, FeatureRules(as_of=AS_OF))
    assert compute("ab_test", f, {"campaigns": ["campaign-1"]}).vector().sum() == 0
    assert set(np.unique(f.lifecycle)) <= {LIFECYCLE_STAGES.index(s) for s in ("non_brand", "purchased", "loyal")}


@pytest.mark.parametrize(("kind", "params", "match"), [
    ("teleport", {}, "unknown insight query kind"),
    ("ltv_tiers", {"by": "x"}, "does not take by"),
    ("group_by", {"table": "transactions", "group_by": ["phone"]}, "may not be grouped on"),
    ("group_by", {"table": "transactions", "group_by": ["channel"]}, "declare the keys"),
    ("group_by", {"table": "transactions", "group_by": ["rfm_segment"], "aggregates": ["sum"], "value": "amount"},
     "bounds"),
    ("group_by", {"table": "customers", "group_by": ["region"], "keys": {"region": ["x"]}, "value": "email",
                  "aggregates": ["sum"], "bounds": [0, 1]}, "may not be summed"),
    ("funnel", {"by": "channel", "channels": ["a", "other"]}, "reserved key"),
    ("golden_hours", {"max_hours_per_customer": 0}, ">= 1"),
    ("golden_hours", {"max_slots_per_customer": 0}, ">= 1"),
    ("golden_hours", {"heatmap": "yes"}, "heatmap must be true or false"),
])
def test_bad_parameters_are_refused(features, kind, params, match):
    with pytest.raises(ConfigError, match=match):
        compute(kind, features, params)


def test_feature_rules_are_validated():
    with pytest.raises(ConfigError, match="as_of"):
        FeatureRules(as_of="not a date")
    with pytest.raises(ConfigError, match="unknown feature rule"):
        FeatureRules.from_dict({"as_of": AS_OF, "quantile": 0.9})
    with pytest.raises(ConfigError, match="increasing"):
        FeatureRules(as_of=AS_OF, ltv_tier_bounds=(500.0, 100.0, 2000.0))


@pytest.mark.parametrize("params", [{"by": "channel", "channels": CHANNELS, "max_channels_per_customer": 2},
                                    {"by": "rfm_segment"}], ids=["by-channel", "by-segment"])
def test_funnel_stage_weights_keep_the_bound_tight_and_the_counts_exact(partner, features, params):
    """Funnel stages are released in units of 1 / STAGE_WEIGHTS (less noise on the deep stages, more on the first):
    the declared L2 is that of unweighted counts, some customer reaching every stage moves the vector by exactly
    it (the bound is tight, not over-charged), and the coordinator's exact release gives back plain counts."""
    from fedinsight.privacy.allocation import QueryNoise
    from fedinsight.tasks.insights.aggregates import STAGE_WEIGHTS
    from fedinsight.tasks.insights.results import combine

    agg = compute("funnel", features, params)
    m = 2 if params["by"] == "channel" else 1
    assert sum(w * w for w in STAGE_WEIGHTS) == pytest.approx(len(FUNNEL_STAGES))
    assert agg.l2 == pytest.approx(2.0 * np.sqrt(m)) and agg.l1 == pytest.approx(m * sum(STAGE_WEIGHTS))
    # the weights rise down the funnel as the counts fall: exposures noisiest, conversions quietest (the deep step
    # rates divide the smallest counts)
    assert list(STAGE_WEIGHTS) == sorted(STAGE_WEIGHTS) and len(set(STAGE_WEIGHTS)) == len(STAGE_WEIGHTS)
    ev = partner.events
    reached = ev.groupby("customer_id")["stage"].nunique()
    everything = ev[ev["customer_id"].isin(reached[reached == len(FUNNEL_STAGES)].index)]
    one_channel = everything.groupby("customer_id")["channel"].nunique()
    customer = one_channel[one_channel == 1].index[0] if params["by"] == "channel" else one_channel.index[0]
    reduced = compute("funnel", customer_features(_without(partner, customer), FeatureRules(as_of=AS_OF)), params)
    diff = agg.vector() - reduced.vector()
    assert np.sqrt((diff**2).sum()) == pytest.approx(np.sqrt(sum(w * w for w in STAGE_WEIGHTS)))
    counts = agg.by_name()["customers"].values
    reply = {"layout": agg.layout(), "values": agg.vector().tolist(), "mechanism": "gaussian", "multiplier": 1.0,
             "sensitivity": agg.l2, "noise_variance": 1.0}
    released = combine("q", [reply], QueryNoise("gaussian", 1.0)).measures["customers"]
    assert np.allclose(released.values, counts)
    # a stage's noise variance is the vector's times its unit squared: exposures noisier, converts quieter
    assert np.allclose(released.variance[0], [1.0 / w**2 for w in STAGE_WEIGHTS])

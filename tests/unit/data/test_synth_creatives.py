"""Planted creatives (``SynthConfig.creatives``, on with ``data synth --offers``): the funnel campaigns' events name
a creative, each segment clicks more on its planted favourite, and the channel x creative x segment insight finds
those favourites from the generator's own output (no creatives added afterwards)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedinsight.data.schema import PartnerData
from fedinsight.data.synth import CAMPAIGN_CHANNELS, SynthConfig, generate_partner_frames
from fedinsight.data.synth_creatives import CREATIVES, FAVOURITE, RFM_RULES, RFM_SEGMENTS
from fedinsight.data.synth_uplift import OFFERS_CAMPAIGN
from fedinsight.tasks.insights.aggregates import compute
from fedinsight.tasks.insights.customer_features import RFM_SEGMENTS as INSIGHT_SEGMENTS
from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features

CONFIG = dict(customers=8_000, partners=2, seed=5, items=30)
AS_OF = "2026-01-01"  # the day after the window's end


@pytest.fixture(scope="module")
def generated():
    plain, _ = generate_partner_frames(SynthConfig(**CONFIG))
    frames, truth = generate_partner_frames(SynthConfig(**CONFIG, offers=True, creatives=True))
    return plain, frames, truth


def test_only_the_funnel_responses_change_and_every_funnel_row_names_a_creative(generated):
    plain, frames, truth = generated
    for partner, tables in plain.items():
        for name in ("customers", "transactions", "interactions"):
            pd.testing.assert_frame_equal(tables[name], frames[partner][name])
        ev = frames[partner]["events"]
        funnel = ev[ev["campaign"] != OFFERS_CAMPAIGN]
        assert funnel["creative"].isin(CREATIVES).all()
        assert ev.loc[ev["campaign"] == OFFERS_CAMPAIGN, "creative"].isna().all()
        # exposures do not depend on the creative: the same customers are exposed in the same campaigns
        key = ["customer_id", "campaign", "channel", "arm", "timestamp"]
        before = tables["events"].query("stage == 'exposure'")[key].reset_index(drop=True)
        pd.testing.assert_frame_equal(before, funnel.query("stage == 'exposure'")[key].reset_index(drop=True))
    assert truth["creatives"]["favourite_by_segment"] == FAVOURITE
    assert "creative" not in next(iter(plain.values()))["events"].columns  # off by default


def test_the_insight_finds_each_segments_planted_favourite_from_the_generators_own_output(generated):
    _, frames, _ = generated
    query = {"by": "rfm_segment", "channels": list(CAMPAIGN_CHANNELS), "creatives": list(CREATIVES),
             "max_pairs_per_customer": 2}
    totals = 0.0
    for pid, tables in frames.items():  # the insight's own exact aggregation, by the RFM segment it computes
        m = compute("channel_creative", customer_features(PartnerData(pid, **tables), FeatureRules(as_of=AS_OF)),
                    query).by_name()
        totals = totals + np.stack([m["exposed"].values, m["responded"].values])
        groups = m["exposed"].dims[0][1]
    exposed, responded = (t.sum(axis=1)[:, : len(CREATIVES)] for t in totals)  # over channels; "other" dropped
    rate = responded / exposed
    for g, seg in enumerate(groups):
        favourite = CREATIVES.index(FAVOURITE[seg])
        assert rate[g].argmax() == favourite, (seg, rate[g])
        # planted: click x1.6 against x0.7 (ratio 2.3); later steps only add responders of the same customers
        assert (rate[g, favourite] / np.delete(rate[g], favourite) > 1.5).all(), (seg, rate[g])


def test_the_planted_segments_use_the_insights_default_rfm_rules():
    rules = FeatureRules(as_of=AS_OF)
    assert {k: getattr(rules, k) for k in RFM_RULES} == RFM_RULES
    assert RFM_SEGMENTS == INSIGHT_SEGMENTS



def test_data_synth_offers_writes_the_creatives_and_their_truth(tmp_path, capsys):
    import json

    from fedinsight.cli import main

    out = tmp_path / "synth"
    assert main(["data", "synth", "--offers", "--customers", "600", "--partners", "2", "--out", str(out),
                 "--format", "csv"]) == 0
    events = pd.concat([pd.read_csv(f) for f in sorted(out.glob("partner-*/events.csv"))])
    funnel = events[events["campaign"] != OFFERS_CAMPAIGN]
    assert len(funnel) and funnel["creative"].isin(CREATIVES).all()
    assert json.loads((out / "ground_truth.json").read_text())["creatives"]["favourite_by_segment"] == FAVOURITE
    capsys.readouterr()

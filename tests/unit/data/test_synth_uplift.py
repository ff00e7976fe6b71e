"""The planted offers campaign: other tables untouched, arms randomised, conversions follow the planted uplift."""

from __future__ import annotations

import pandas as pd

from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.data.synth_uplift import ARMS, OFFERS_CAMPAIGN


def test_offers_add_only_their_events_and_truth_and_the_effects_show_in_the_conversions():
    config = dict(customers=12_000, partners=2, seed=7, items=30)
    plain, _ = generate_partner_frames(SynthConfig(**config))
    frames, truth = generate_partner_frames(SynthConfig(**config, offers=True))
    for partner, tables in plain.items():
        for name in ("customers", "transactions", "interactions"):
            pd.testing.assert_frame_equal(tables[name], frames[partner][name])
        ev = frames[partner]["events"]
        funnel = ev[ev["campaign"] != OFFERS_CAMPAIGN].reset_index(drop=True)  # the same rows (event ids of later
        pd.testing.assert_frame_equal(tables["events"].drop(columns="event_id"),  # blocks shift: ids are sequential)
                                      funnel.drop(columns="event_id"))
        assert ev["event_id"].is_unique
    ct = truth["customer_truth"]
    eligible = ct[ct["offer_eligible"]]
    shares = eligible["offer_arm"].value_counts(normalize=True)
    assert set(shares.index) == set(ARMS) and shares.between(0.3, 0.37).all()  # 1/3 each (sd ~0.005)
    rate = eligible.groupby("offer_arm")["offer_converted"].mean()
    for offer in ("discount", "gift"):
        planted = eligible.loc[eligible["offer_arm"] == offer, f"uplift_{offer}"].mean()
        # observed lift vs control: ~3,300 customers per arm, so its sd is about 0.008; 0.03 is ~4 sd
        assert abs((rate[offer] - rate["control"]) - planted) < 0.03, (offer, rate.to_dict(), planted)
    events = pd.concat([f["events"] for f in frames.values()])
    offers = events[events["campaign"] == OFFERS_CAMPAIGN]
    exposed = offers[offers["stage"] == "exposure"]
    assert exposed["customer_id"].is_unique and len(exposed) == int(ct["offer_eligible"].sum())
    converted = set(offers.loc[offers["stage"] == "convert", "customer_id"])
    assert converted == set(ct.loc[ct["offer_converted"], "customer_id"])
    assert truth["uplift"]["costs"] == {"discount": 4.0, "gift": 3.0}

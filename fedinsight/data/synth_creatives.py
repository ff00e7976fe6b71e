"""Planted creatives for the synthetic generator's funnel campaigns: each segment responds best to one creative.

Why a module of its own: the channel x creative x segment insight needs campaign events whose creatives have a
known best per segment, and that truth is one concept apart from the funnel of :mod:`fedinsight.data.synth`. With
``SynthConfig.creatives`` each (customer, funnel campaign) is shown one of :data:`CREATIVES`, drawn uniformly from
a random stream of its own, and the click rate (exposure -> click) is multiplied by :data:`FAVOURITE_MULT` when the
creative is the customer's segment's favourite (:data:`FAVOURITE`) and by :data:`OTHER_MULT` otherwise. The two
multipliers average to 1 over the uniform draw (1.6 + 2 x 0.7 = 3), so the funnel's planted step rates per channel
and segment still hold on average and every later step is unchanged; the largest planted click rate (search x
champions, 0.4) stays below 1 after the boost, so nothing is clipped.

Favourites are per **RFM segment** as the channel x creative insight computes it with its default rules at the end
of the generated window (:func:`rfm_segments`: the rules' thresholds are copied here, since the data layer sits
below the tasks; a test checks they match), not per the generator's hidden segment: the RFM segment is what an
analyst groups by, and the hidden segments mix across RFM segments too much for a favourite to show there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CREATIVES: tuple[str, ...] = ("spring-sale", "free-gift", "story")
RFM_SEGMENTS: tuple[str, ...] = ("champions", "loyal", "potential", "at_risk", "hibernating")
FAVOURITE: dict[str, str] = {"champions": "free-gift", "loyal": "story", "potential": "spring-sale",
                             "at_risk": "free-gift", "hibernating": "story"}
"""Each RFM segment's favourite creative."""
FAVOURITE_MULT = 1.6
OTHER_MULT = 0.7
RFM_RULES: dict[str, int] = {"window_days": 365, "champions_max_recency_days": 30, "champions_min_purchases": 15,
                             "loyal_max_recency_days": 90, "loyal_min_purchases": 8,
                             "potential_max_recency_days": 90, "at_risk_max_recency_days": 365}
"""The insights' default RFM rules (``FeatureRules``), applied at the end of the window."""
_DAY = 86_400


def rfm_segments(n: int, customer: np.ndarray, time: np.ndarray, as_of: int) -> np.ndarray:
    """Each customer's RFM segment index (into :data:`RFM_SEGMENTS`) from its purchases (block-local customer
    index and epoch seconds) strictly before ``as_of``, by :data:`RFM_RULES`; first matching rule wins."""
    r = RFM_RULES
    before = time < as_of
    window = np.bincount(customer[before & (time >= as_of - r["window_days"] * _DAY)], minlength=n)
    last = np.full(n, -np.inf)
    np.maximum.at(last, customer[before], time[before].astype(float))

    def recent(days: int) -> np.ndarray:
        return last >= as_of - days * _DAY

    rules = [recent(r["champions_max_recency_days"]) & (window >= r["champions_min_purchases"]),
             recent(r["loyal_max_recency_days"]) & (window >= r["loyal_min_purchases"]),
             recent(r["potential_max_recency_days"]), recent(r["at_risk_max_recency_days"])]
    out = np.full(n, len(RFM_SEGMENTS) - 1, dtype=np.int64)
    for index, rule in reversed(list(enumerate(rules))):  # the first rule wins: apply it last
        out[rule] = index
    return out


FAVOURITE_INDEX = np.asarray([CREATIVES.index(FAVOURITE[s]) for s in RFM_SEGMENTS], dtype=np.int64)


def draw(rng: np.random.Generator, n: int) -> np.ndarray:
    """One creative index per customer of a block for one campaign (uniform)."""
    return rng.integers(0, len(CREATIVES), n)


def click_multiplier(creative: np.ndarray, rfm: np.ndarray) -> np.ndarray:
    """Per customer: the factor on its click rate (its RFM segment's favourite creative or not)."""
    return np.where(creative == FAVOURITE_INDEX[rfm], FAVOURITE_MULT, OTHER_MULT)


def facts() -> dict[str, Any]:
    """The planted creatives for ``ground_truth.json``."""
    return {"creatives": list(CREATIVES), "favourite_by_segment": dict(FAVOURITE),
            "click_rate_multiplier": {"favourite": FAVOURITE_MULT, "other": OTHER_MULT},
            "segments": "RFM segment by the insights' default rules at the end of the window", "rfm_rules": RFM_RULES,
            "mechanism": "one creative per customer and funnel campaign, uniform; click | exposure x 1.6 for the "
                         "RFM segment's favourite, x 0.7 otherwise (1 on average: the funnel's step rates hold); the "
                         "offers campaign has no creative"}

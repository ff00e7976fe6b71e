"""The ground truth a synthetic federation plants: public facts about the generator, written beside the partners.

Why a module of its own: the same dictionary goes to ``ground_truth.json`` (:mod:`fedinsight.data.synth_write`) and
to the in-memory frames' truth; benchmarks and tests compare what the federation finds with it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.data import synth_creatives as sc
from fedinsight.data import synth_uplift as su
from fedinsight.data.schema import FUNNEL_STAGES, TABLES
from fedinsight.data.synth_base import (
    AMOUNT_MEAN,
    AMOUNT_SIGMA,
    BASE_STEP_RATES,
    CAMPAIGN_CHANNEL_P,
    CAMPAIGN_CHANNELS,
    CATEGORIES,
    EXPOSURE_P,
    FAVOURITE_BOOST,
    FAVOURITE_SHARE,
    FUNNEL_STEPS,
    GAMMA_SHAPE,
    GOLDEN_HOUR_NOISE,
    GOLDEN_HOUR_SD,
    GOLDEN_HOURS,
    INTERACTIONS_BASE,
    INTERACTIONS_CAP,
    INTERACTIONS_PER_PURCHASE,
    MAX_STEP_RATE,
    PURCHASES_PER_YEAR,
    SECOND_FAVOURITE_P,
    SEGMENT_SHARES,
    SEGMENT_STEP_MULT,
    SEGMENTS,
    ZIPF_EXPONENT,
    Plan,
)


def iso_time(seconds: int) -> str:
    """Epoch seconds as the naive-UTC ISO text the truth file uses."""
    return pd.Timestamp(seconds, unit="s").isoformat()


def ground_truth(plan: Plan, rows: dict[str, dict[str, int]], seg_counts: np.ndarray) -> dict[str, Any]:
    """Everything the plan planted, with the rows written per partner and the customers per hidden segment."""
    cfg = plan.config
    partners = {
        name: {"customers": int(np.sum(plan.partner_of == p)), "draw_share": float(plan.partner_shares[p])}
        for p, name in enumerate(plan.partner_names)
    }
    steps = list(FUNNEL_STEPS)
    totals = {t: int(sum(r.get(t, 0) for r in rows.values())) for t in TABLES}
    return {
        "generator": "fedinsight.data.synth",
        "format_version": 1,
        "config": asdict(cfg),
        "window": {"start": iso_time(plan.start), "end": iso_time(plan.end), "cutoff": iso_time(plan.cutoff)},
        "customers": cfg.customers,
        "partners": partners,
        "rows": totals,
        "rows_per_partner": rows,
        "segments": {
            "names": list(SEGMENTS),
            "shares": dict(zip(SEGMENTS, SEGMENT_SHARES.tolist(), strict=True)),
            "counts": dict(zip(SEGMENTS, (int(c) for c in seg_counts), strict=True)),
            "purchases_per_year_mean": dict(zip(SEGMENTS, PURCHASES_PER_YEAR.tolist(), strict=True)),
            "purchase_rate_distribution": f"gamma(shape={GAMMA_SHAPE}, scale=mean/shape) per segment",
            "amount_mean": dict(zip(SEGMENTS, AMOUNT_MEAN.tolist(), strict=True)),
            "amount_log_sd": AMOUNT_SIGMA,
        },
        "propensity": {
            "cutoff": iso_time(plan.cutoff),
            "mechanism": "purchases ~ Poisson(λ × active time), the same λ before and after cutoff; "
            "p_buy_after_cutoff per customer is in ground_truth/customer_truth.parquet",
        },
        "recommendation": {
            "categories": list(CATEGORIES),
            "zipf_exponent": ZIPF_EXPONENT,
            "favourite_boost": FAVOURITE_BOOST,
            "second_favourite_probability": SECOND_FAVOURITE_P,
            "favourite_share_of_purchases": FAVOURITE_SHARE,
            "interactions_per_customer": f"min({INTERACTIONS_CAP}, Poisson({INTERACTIONS_BASE} + "
            f"{INTERACTIONS_PER_PURCHASE} × expected purchases))",
        },
        "funnel": {
            "stages": list(FUNNEL_STAGES),
            "exposure_probability": EXPOSURE_P,
            "eligibility": "signed up before the campaign start",
            "channel_mix": dict(zip(CAMPAIGN_CHANNELS, CAMPAIGN_CHANNEL_P.tolist(), strict=True)),
            "base_step_rates": {
                ch: dict(zip(steps, BASE_STEP_RATES[i].tolist(), strict=True)) for i, ch in enumerate(CAMPAIGN_CHANNELS)
            },
            "segment_multipliers": {
                s: dict(zip(steps, SEGMENT_STEP_MULT[j].tolist(), strict=True)) for j, s in enumerate(SEGMENTS)
            },
            "step_rates": {
                ch: {s: dict(zip(steps, plan.step_rates[i, j].tolist(), strict=True)) for j, s in enumerate(SEGMENTS)}
                for i, ch in enumerate(CAMPAIGN_CHANNELS)
            },
            "step_rates_note": f"min({MAX_STEP_RATE}, base × segment multiplier); arm B's convert rate "
            "is further multiplied by the campaign's ab_lift",
        },
        "campaigns": {
            c.name: {"start": iso_time(c.start), "end": iso_time(c.end), "ab_lift_convert": c.lift}
            for c in plan.campaigns
        },
        "ab_lift": {c.name: c.lift for c in plan.campaigns},
        "ab_split": {"A": 0.5, "B": 0.5},
        "golden_hours": dict(zip(SEGMENTS, GOLDEN_HOURS.tolist(), strict=True)),
        "golden_hour_distribution": {"sd_hours": GOLDEN_HOUR_SD, "uniform_noise_share": GOLDEN_HOUR_NOISE},
        "items": cfg.items,
        **({"uplift": su.facts(iso_time(plan.cutoff), iso_time(plan.end))} if cfg.offers else {}),
        **({"creatives": sc.facts()} if cfg.creatives else {}),
    }

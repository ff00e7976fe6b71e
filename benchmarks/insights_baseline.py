"""The plain-pandas equivalent of the insight catalogue on one partner's tables: no bounds, no noise.

Two uses in ``benchmarks/insights.py``: the speed reference ("the equivalent plain pandas group-bys on
the same data") and an independent ground truth for accuracy (written the obvious way, without any
code from ``fedinsight.client``). Segment rules are the same declared defaults.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RFM = ("champions", "loyal", "potential", "at_risk", "hibernating")
LIFECYCLE = ("non_brand", "aware", "interested", "purchased", "loyal")
TIERS = ("none", "low", "mid", "high", "top")


def pandas_catalogue(data, as_of: str, channels: list[str], campaigns: list[str],
                     tx_channels: list[str], *, heatmap: bool = True) -> dict[str, pd.DataFrame | pd.Series]:
    """Every catalogue aggregate with pandas group-bys (consenting customers, rows before ``as_of``);
    ``heatmap`` adds the golden-hours weekday x hour slots, as the catalogue does by default."""
    ref = pd.Timestamp(as_of)
    customers = data.customers[data.customers["consent"]]
    ids = customers["customer_id"]
    tx = data.transactions[(data.transactions["timestamp"] < ref) & data.transactions["customer_id"].isin(ids)]
    ev = data.events[(data.events["timestamp"] < ref) & data.events["customer_id"].isin(ids)]

    day = pd.Timedelta(days=1)
    age = ref - tx["timestamp"]
    year = age <= 365 * day
    per = pd.DataFrame({
        "recency": age.groupby(tx["customer_id"]).min(),
        "purchases": tx.groupby("customer_id").size(),
        "f365": year.groupby(tx["customer_id"]).sum(),
        "spend": tx["amount"].where(year, 0.0).groupby(tx["customer_id"]).sum(),
        "spend_prev": tx["amount"].where(~year & (age <= 730 * day), 0.0).groupby(tx["customer_id"]).sum(),
    }).reindex(ids.to_numpy())
    recency = per["recency"]
    per = per.drop(columns="recency").fillna(0)
    per["rfm"] = np.select(
        [(recency <= 30 * day) & (per["f365"] >= 15), (recency <= 90 * day) & (per["f365"] >= 8),
         recency <= 90 * day, recency <= 365 * day], RFM[:4], RFM[4])
    aware = pd.Series(True, index=ev["customer_id"].unique())
    interested = pd.Series(True, index=ev.loc[ev["stage"] != "exposure", "customer_id"].unique())
    per["lifecycle"] = np.select(
        [per["f365"] >= 4, per["purchases"] >= 1, interested.reindex(per.index, fill_value=False).to_numpy(),
         aware.reindex(per.index, fill_value=False).to_numpy()],
        ["loyal", "purchased", "interested", "aware"], "non_brand")
    bins = [-np.inf, 0, 100, 500, 2000, np.inf]
    per["tier"] = pd.cut(per["spend"], bins, labels=TIERS, right=False).astype(str).where(per["spend"] > 0, "none")
    per["tier_prev"] = pd.cut(per["spend_prev"], bins, labels=TIERS, right=False).astype(str).where(
        per["spend_prev"] > 0, "none")
    per["repeat"] = per["purchases"] >= 2

    out: dict[str, pd.DataFrame | pd.Series] = {}
    for by in ("rfm", "lifecycle"):
        out[f"profile_{by}"] = per.groupby(by).agg(customers=("spend", "size"), spend=("spend", "sum"),
                                                   repurchasers=("repeat", "sum"))
    out["ltv"] = per.groupby("tier").agg(customers=("spend", "size"), value=("spend", "sum"))
    out["ltv_prev"] = per.groupby("tier_prev").agg(customers=("spend_prev", "size"), value=("spend_prev", "sum"))

    seg = per["rfm"]
    ev = ev.assign(rfm=ev["customer_id"].map(seg))
    out["funnel_channel"] = ev.groupby(["channel", "stage"])["customer_id"].nunique().unstack(fill_value=0)
    out["funnel_segment"] = ev.groupby(["rfm", "stage"])["customer_id"].nunique().unstack(fill_value=0)
    expo = ev[(ev["stage"] == "exposure") & ev["campaign"].isin(campaigns)]
    arm_of = expo.sort_values("timestamp").drop_duplicates(["customer_id", "campaign"])[["customer_id", "campaign",
                                                                                          "arm"]]
    conv = ev[ev["stage"] == "convert"][["customer_id", "campaign"]].drop_duplicates().merge(
        arm_of, on=["customer_id", "campaign"])
    out["ab_exposed"] = arm_of.groupby(["campaign", "arm"]).size().unstack(fill_value=0)
    out["ab_converted"] = conv.groupby(["campaign", "arm"]).size().unstack(fill_value=0)
    resp = ev[ev["stage"] != "exposure"]
    out["hours"] = resp.groupby(["rfm", resp["timestamp"].dt.hour])["customer_id"].nunique().unstack(fill_value=0)
    out["weekdays"] = resp.groupby(["rfm", resp["timestamp"].dt.day_of_week])["customer_id"].nunique().unstack(
        fill_value=0)
    if heatmap:
        ts = resp["timestamp"]
        out["slots"] = resp.groupby(["rfm", ts.dt.day_of_week * 24 + ts.dt.hour])["customer_id"].nunique().unstack(
            fill_value=0)
    out["channel_exposed"] = ev[ev["stage"] == "exposure"].groupby(["rfm", "channel"])["customer_id"].nunique()
    out["channel_responded"] = resp.groupby(["rfm", "channel"])["customer_id"].nunique()
    out["spend_by_channel"] = tx.groupby("channel").agg(customers=("customer_id", "nunique"),
                                                        count=("amount", "size"), mean=("amount", "mean"))
    return out

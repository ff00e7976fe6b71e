"""The golden-hours heatmap end to end without Ray: released joint counts equal an independent pandas
recomputation when the noise is tiny, the noise grows as the bounds say, and CLI/API show the nested shape."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fedinsight.cli import main
from fedinsight.data.schema import PartnerData
from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.privacy.suppression import MIN_GROUP_FLOOR
from fedinsight.tasks.insights.catalogue import default_batch, parse_batch
from fedinsight.tasks.insights.customer_features import WEEKDAYS
from fedinsight.tasks.insights.server import price_batch
from fedinsight.tasks.insights.simulate import release_in_process

AS_OF = "2026-01-01"
K_SLOTS = 3


@pytest.fixture(scope="module")
def federation() -> dict[str, PartnerData]:
    frames, _ = generate_partner_frames(SynthConfig(customers=6_000, partners=3, seed=5))
    return {p: PartnerData(p, **t) for p, t in frames.items()}


def _batch(epsilon: float, *, min_group_size: int = 50, heatmap: bool = True, mechanism: str = "gaussian"):
    batch = default_batch("synthetic", epsilon=epsilon, min_group_size=min_group_size, mechanism=mechanism,
                          only=["golden-hours"])
    if heatmap:
        return batch
    data = batch.model_dump(mode="json")
    data["queries"][0]["heatmap"] = False
    return parse_batch(data)


def _slot_truth(partner: PartnerData, k: int) -> pd.Series:
    """Customers per "all" x slot, each customer in their first ``k`` distinct slots by time -- plain pandas."""
    c = partner.customers
    ids = c.loc[c["consent"], "customer_id"]
    ev = partner.events
    ev = ev[ev["customer_id"].isin(ids) & ev["stage"].isin(["click", "participate", "convert"])
            & (ev["timestamp"] < pd.Timestamp(AS_OF, tz=ev["timestamp"].dt.tz))]
    slot = ev["timestamp"].dt.day_of_week * 24 + ev["timestamp"].dt.hour
    first = (ev.assign(slot=slot).groupby(["customer_id", "slot"])["timestamp"].min().reset_index()
             .sort_values(["customer_id", "timestamp", "slot"]))
    kept = first[first.groupby("customer_id").cumcount() < k]
    return kept.groupby("slot").size().reindex(range(168), fill_value=0)


def _rfm_all(batch):
    data = batch.model_dump(mode="json")
    data["queries"][0]["by"] = "all"
    return parse_batch(data)


def test_released_heatmap_matches_an_exact_recomputation_when_noise_is_tiny(federation):
    # the heatmap's arithmetic, not suppression, is under test: a minimum of 1 (below the floor no job may set,
    # hence model_copy, which skips validation) shows every slot that is not (near-)empty
    batch = _rfm_all(_batch(100.0)).model_copy(update={"min_group_size": 1})
    insight, = release_in_process(federation, batch)
    truth = sum(_slot_truth(p, K_SLOTS) for p in federation.values())
    group, = insight["result"]["groups"]
    heat = group["by_slot"]
    assert list(heat) == list(WEEKDAYS) and all(len(hours) == 24 for hours in heat.values())
    checked = 0
    for d, day in enumerate(WEEKDAYS):
        for h in range(24):
            cell, true = heat[day][f"{h:02d}"], float(truth[d * 24 + h])
            if cell.get("suppressed"):
                # only (near-)empty slots fall under a minimum of 1: the noise sd is 0.49 here, so a slot of
                # >= 5 customers drops below 1 only past 8 sd (probability < 1e-15)
                assert true < 5
                continue
            est = cell["customers"]
            assert est["noise_sd"] < 1.0
            # 6 sd: Gaussian noise misses by more with probability 2e-9 per cell, 3e-7 over all 168 cells
            # (5 sd would fail 168 x 5.7e-7 ~ 1e-4 of runs)
            assert abs(est["value"] - true) <= 6 * est["noise_sd"], (day, h)
            assert est["ci95"][0] <= est["value"] <= est["ci95"][1]
            assert set(cell["share"]) >= {"value", "ci95", "noise_sd"}
            checked += 1
    assert checked >= int((truth >= 5).sum()) > 50 and truth.sum() > 500  # every slot of >= 5 customers shown
    uncapped = sum(_slot_truth(p, 168).sum() for p in federation.values())
    assert uncapped > truth.sum()  # the cap of K_SLOTS slots per customer was exercised
    d, h = divmod(int(truth.to_numpy().argmax()), 24)
    top = sorted(truth.to_numpy())[-2:]
    if top[1] - top[0] > 10:  # an unambiguous peak must be the one released
        assert group["peak_slot"] == f"{WEEKDAYS[d]}-{h:02d}"


def test_heatmap_shares_the_epsilon_and_grows_the_noise_by_the_bounds(federation):
    """Same epsilon, same noise multiplier; the noise sd grows by sqrt((k_h+k_w+k_s)/(k_h+k_w)) (Gaussian)
    or (k_h+k_w+k_s)/(k_h+k_w) (Laplace) -- the figures written in docs/insights.md."""
    for mechanism, factor in (("gaussian", np.sqrt(8 / 5)), ("laplace", 8 / 5)):
        with_heat = _batch(1.0, mechanism=mechanism, min_group_size=MIN_GROUP_FLOOR)
        without = _batch(1.0, mechanism=mechanism, min_group_size=MIN_GROUP_FLOOR, heatmap=False)
        assert price_batch(with_heat) == price_batch(without)  # the price does not depend on the bounds
        a, = release_in_process(federation, with_heat)
        b, = release_in_process(federation, without)
        assert a["epsilon"] == pytest.approx(b["epsilon"]) and a["noise_multiplier"] == b["noise_multiplier"]
        pairs = [(ga[m][k]["customers"]["noise_sd"], gb[m][k]["customers"]["noise_sd"])
                 for ga, gb in zip(a["result"]["groups"], b["result"]["groups"], strict=True)
                 for m in ("by_hour", "by_weekday") for k in ga[m]
                 if not ga[m][k].get("suppressed") and not gb[m][k].get("suppressed")]
        assert pairs
        for x, y in pairs:
            assert x / y == pytest.approx(factor, rel=1e-9)
        assert "by_slot" not in b["result"]["groups"][0] and b["groups"] == 5 * (24 + 7)
        assert a["groups"] == 5 * (24 + 7 + 168)


def test_cli_show_summarises_heatmaps_and_api_serves_the_nested_shape(federation, tmp_path, capsys):
    from fedinsight.coordinator.api import create_app
    from fedinsight.coordinator.state import CoordinatorState

    insight, = release_in_process(federation, _batch(8.0, min_group_size=20))
    state = CoordinatorState(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path)
    state.insights.save("batch-1", [insight], requester="analyst")

    assert main(["insights", "show", "golden-hours", "--db", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    rows = text.count("│ groups.")  # one per table row (long paths fold onto continuation lines)
    assert text.count("heatmap: 168 slots") == 5 and "--cells" in text  # one summary row per group
    assert rows <= 5 * (2 + 2 * (24 + 7) + 2)  # answers + marginal cells + peak + heatmap summary per group
    assert main(["insights", "show", "golden-hours", "--db", str(tmp_path), "--cells"]) == 0
    full = capsys.readouterr().out
    assert "heatmap: 168 slots" not in full and full.count("│ groups.") >= rows - 5 + 5 * 168
    assert main(["insights", "show", "golden-hours", "--db", str(tmp_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == json.loads(json.dumps(insight))  # every cell, nested {weekday: {hour: cell}}

    client = TestClient(create_app(state))
    token = state.tokens.create("analyst-1", "analyst")[0]
    items = client.get("/insights", headers={"Authorization": f"Bearer {token}"}).json()["items"]
    one = client.get(f"/insights/{items[0]['id']}", headers={"Authorization": f"Bearer {token}"}).json()
    group = one["payload"]["result"]["groups"][0]
    assert group["peak_slot"] == insight["result"]["groups"][0]["peak_slot"]
    assert len(group["by_slot"]) == 7 and all(len(v) == 24 for v in group["by_slot"].values())

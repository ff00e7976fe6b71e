"""Channel x creative x segment (issue 16 item 5): the three-way counts, the customer cap, suppression of small
cells, the best pair per segment, and the refusal in hello of a partner whose events name no creative."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.insights import FakeGrid, run_task

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import PartnerData
from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.privacy.allocation import query_noise
from fedinsight.privacy.ledger import PrivacyLedger
from fedinsight.tasks.insights.aggregates import compute
from fedinsight.tasks.insights.catalogue import parse_batch
from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features
from fedinsight.tasks.insights.results import Combined, CombinedQuery, build_insight

AS_OF = "2026-01-01"
QUERY = {"name": "channel-creative", "kind": "channel_creative", "by": "all", "channels": ["email", "sms"],
         "creatives": ["spring-sale", "free-gift"], "max_pairs_per_customer": 2}


def _events(rows: list[tuple[str, str, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "channel", "creative", "stage"])
    return frame.assign(timestamp=pd.to_datetime(frame["timestamp"], format="ISO8601"), campaign="spring")


def _partner(events: pd.DataFrame) -> PartnerData:
    ids = sorted(events["customer_id"].unique())
    customers = pd.DataFrame({"customer_id": ids, "consent": True})
    tx = pd.DataFrame({"customer_id": ids, "timestamp": pd.Timestamp("2025-06-01"), "amount": 10.0, "quantity": 1})
    return PartnerData("p", customers=customers, transactions=tx, events=events)


def test_three_way_counts_by_hand_and_the_pair_cap():
    events = _events([
        ("a", "2025-11-01", "email", "spring-sale", "exposure"), ("a", "2025-11-01 01:00", "email", "spring-sale",
                                                                  "click"),
        ("a", "2025-11-02", "sms", "free-gift", "exposure"),
        ("b", "2025-11-01", "email", "free-gift", "exposure"), ("b", "2025-11-03", "email", "free-gift", "exposure"),
        # c sees three pairs: only its first two by time count (the cap bounds what one customer moves)
        ("c", "2025-11-01", "sms", "spring-sale", "exposure"), ("c", "2025-11-02", "email", "spring-sale",
                                                                "exposure"),
        ("c", "2025-11-03", "email", "free-gift", "exposure"), ("c", "2025-11-03 02:00", "email", "free-gift",
                                                                "convert"),
        ("d", "2025-11-01", "push", "banner-x", "exposure"),  # undeclared names count under "other"
    ])
    agg = compute("channel_creative", customer_features(_partner(events), FeatureRules(as_of=AS_OF)),
                  {k: v for k, v in QUERY.items() if k not in ("name", "kind")})
    m = agg.by_name()
    assert m["exposed"].dims[1:] == (("channel", ("email", "sms", "other")),
                                     ("creative", ("spring-sale", "free-gift", "other")))
    exposed, responded = m["exposed"].values[0], m["responded"].values[0]
    np.testing.assert_array_equal(exposed, [[2, 1, 0], [1, 1, 0], [0, 0, 1]])  # c's email/free-gift is its 3rd
    np.testing.assert_array_equal(responded, [[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert agg.l1 == 4 and agg.l2 == pytest.approx(2.0)  # 2 pairs x (exposed, responded)


def test_a_partner_without_the_column_gets_a_clear_error():
    events = _events([("a", "2025-11-01", "email", "x", "exposure")]).drop(columns="creative")
    with pytest.raises(ConfigError, match="map the column .* to `creative`"):
        compute("channel_creative", customer_features(_partner(events), FeatureRules(as_of=AS_OF)),
                {k: v for k, v in QUERY.items() if k not in ("name", "kind")})


def _batch(**query) -> object:
    return parse_batch({"features": {"as_of": AS_OF}, "queries": [{**QUERY, **query}], "epsilon": 1.0})


def test_small_cells_are_suppressed_and_the_best_released_pair_wins():
    batch = _batch(by="rfm_segment")
    spec = batch.queries[0]
    groups = ("champions", "loyal")
    dims = (("rfm_segment", groups), ("channel", ("email", "sms", "other")),
            ("creative", ("spring-sale", "free-gift", "other")))
    exposed = np.zeros((2, 3, 3))
    responded = np.zeros((2, 3, 3))
    exposed[0, 0, 0], responded[0, 0, 0] = 400, 60   # 15 %
    exposed[0, 1, 1], responded[0, 1, 1] = 30, 29    # 97 % but only 30 exposed: suppressed, cannot win
    exposed[0, 0, 1], responded[0, 0, 1] = 500, 100  # 20 %: the best released pair
    exposed[1, 1, 0], responded[1, 1, 0] = 300, 75   # loyal: only one pair released
    exposed[1, 0, 0], responded[1, 0, 0] = 200, 20   # exposed released, responded (20) under 50: no rate
    tiny = np.full((2, 3, 3), 1e-6)  # next to no noise: the rule is applied to exact figures here
    cq = CombinedQuery({"exposed": Combined(dims, exposed, tiny), "responded": Combined(dims, responded, tiny)},
                       "gaussian", 3)
    out = build_insight(spec, cq, rules=batch.features, min_group_size=50, noise=query_noise("gaussian", 1.0),
                        epsilon=1.0, delta=1e-6)
    champions, loyal = out["result"]["groups"]
    assert champions["cells"]["sms"]["free-gift"] == {"suppressed": True}
    assert champions["cells"]["email"]["spring-sale"]["response_rate"]["value"] == pytest.approx(0.15)
    best = champions["best_pair"]
    assert (best["channel"], best["creative"]) == ("email", "free-gift")
    assert best["response_rate"]["value"] == pytest.approx(0.2) and best["clear_winner"]
    assert best["runner_up"]["creative"] == "spring-sale"
    assert (loyal["best_pair"]["channel"], loyal["best_pair"]["creative"]) == ("sms", "spring-sale")
    assert loyal["best_pair"]["runner_up"] is None and not loyal["best_pair"]["clear_winner"]
    assert loyal["cells"]["email"]["spring-sale"]["response_rate"] == {"suppressed": True}
    assert loyal["cells"]["email"]["spring-sale"]["exposed"]["value"] == pytest.approx(200)
    # every empty cell, the 30-customer cell (both measures) and loyal's 20 responders
    assert out["groups"] == 36 and out["suppressed_groups"] == (18 - 4) + (18 - 3)


@pytest.fixture(scope="module")
def partner_folders(tmp_path_factory):
    from fedinsight.data.federation import write_partner_folder
    from fedinsight.partner.policy_init import init_federation

    frames, _ = generate_partner_frames(SynthConfig(customers=1_500, partners=3, seed=3))
    root = tmp_path_factory.mktemp("partners")
    write_partner_folder({p: PartnerData(p, **t) for p, t in frames.items()}, root)  # no creative column
    init_federation(root)
    return {k: str(root / pid) for k, pid in enumerate(sorted(frames))}


def test_refused_in_hello_without_the_creative_column_nothing_charged(tmp_path, partner_folders):
    grid = FakeGrid(partner_folders)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    rc = {"task": "insights", "batch": _batch().model_dump_json(), "partners": 3, "ledger-url": url,
          "out-dir": str(tmp_path / "out"), "budget": 5.0}
    with pytest.raises(ConfigError, match="no `creative` column. Map the column"):
        run_task(grid, rc)
    assert grid.sent == ["hello"] * 3  # no partner computed
    assert PrivacyLedger(url).partners() == []  # nothing charged, not even a budget row
    assert not (tmp_path / "out" / "summary.json").exists()


def test_a_spec_names_its_own_creatives_and_the_preset_adds_the_query():
    from fedinsight.tasks.insights.options import InsightsOptions
    from fedinsight.tasks.insights.spec import canonical, parse_spec

    text = ('epsilon = 1.0\npreset = "marketing-overview"\n[window]\nend = "2026-01-01"\n[keys]\n'
            'channels = ["微信", "Baidu 搜索"]\ncampaigns = ["春节大促"]\npurchase_channels = ["store"]\n'
            'creatives = ["红包封面", "free gift"]\n')
    batch, _ = InsightsOptions(spec=canonical(parse_spec(text))).spec_job(requester="t").batch()
    query = next(q for q in batch.queries if q.kind == "channel_creative")
    assert (query.channels, query.creatives) == (["微信", "Baidu 搜索"], ["红包封面", "free gift"])
    # without creatives the preset leaves the query out (partners need not hold the column)
    plain, _ = InsightsOptions(spec=canonical(parse_spec(text.replace('creatives = ["红包封面", "free gift"]\n', ""))
                                              )).spec_job(requester="t").batch()
    assert "channel_creative" not in {q.kind for q in plain.queries}


OWN_CREATIVES = {0: "春季海报", 1: "Free gift video"}


@pytest.fixture(scope="module")
def own_folders(tmp_path_factory):
    """Partners whose campaign log names the creative in its own column ("Ad Variant"), mapped in mapping.toml."""
    from fedinsight.partner.policy_init import init_partner

    frames, _ = generate_partner_frames(SynthConfig(customers=3_000, partners=3, seed=4))
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    folders = {}
    for k, (_pid, tables) in enumerate(sorted(frames.items())):
        folder = root / f"shop {k}"
        folder.mkdir()
        for table in ("customers", "transactions"):
            tables[table].drop(columns=[c for c in ("name", "phone", "email") if c in tables[table]]).to_csv(
                folder / f"{table}.csv", index=False)
        events = tables["events"].copy()
        events["Ad Variant"] = [OWN_CREATIVES[i] for i in rng.integers(0, 2, len(events))]
        events.to_csv(folder / "campaign_log.csv", index=False)
        (folder / "mapping.toml").write_text('[tables.events]\nfiles = ["campaign_log.csv"]\n\n'
                                             '[tables.events.columns]\ncreative = "Ad Variant"\n')
        init_partner(folder)
        folders[k] = str(folder)
    return folders


def test_own_names_from_the_mapping_come_back_in_the_table(tmp_path, own_folders):
    grid = FakeGrid(own_folders)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    batch = _batch(creatives=list(OWN_CREATIVES.values()), channels=["email", "sms", "app_push", "social", "search"])
    rc = {"task": "insights", "batch": batch.model_dump_json(), "partners": 3, "ledger-url": url,
          "out-dir": str(tmp_path / "out"), "budget": 5.0}
    run_task(grid, rc)
    assert grid.sent == ["hello"] * 3 + ["compute"] * 3
    import json

    (insight,) = json.loads((tmp_path / "out" / "insights.json").read_text())["insights"]
    group = insight["result"]["groups"][0]
    assert set(group["cells"]["email"]) == {*OWN_CREATIVES.values(), "other"}
    best = group["best_pair"]
    assert best is not None and best["creative"] in OWN_CREATIVES.values()  # thousands exposed per pair: released
    assert PrivacyLedger(url).status("partner-0").charges == 1

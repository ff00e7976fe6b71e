"""Uplift's audience and the offer list's features come from the partner's engine and equal the pandas path's; a
whole uplift job runs with ``data()`` failing.

Equality is exact: arms and conversions are integers, money is whole quarters (tests/support/engine_data.py) and
durations are whole microseconds on both paths, so every feature is the same float. A mapped export's amounts
are in cents (pandas adds floats row by row, the engine exactly): its money may differ in the last bits.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from support.engine_data import ERASED, OPTED_OUT, EngineOnly, own_tables, write_csv_partner
from support.federations import run_in_process

from fedinsight.core.errors import ConfigError
from fedinsight.federation.task import phase_of
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.view import PartnerView
from fedinsight.tasks.uplift.audience_scan import engine_audience, engine_features_at
from fedinsight.tasks.uplift.features import Audience, audience, features_at

CAMPAIGN = "spring's sale"  # a quote the scan must escape


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tables = own_tables(customers=120)
    ev = tables["events"]
    rng = np.random.default_rng(11)
    ev["campaign"] = ev["campaign"].replace("spring sale", CAMPAIGN)
    ev["stage"] = rng.choice(["exposure", "exposure", "convert", "click"], len(ev))
    ev["arm"] = rng.choice(["A", "B", "C"], len(ev))
    ev.loc[ev.index[:4], "arm"] = None  # no arm: in no job's audience
    # one customer exposed to two arms at the same instant: the arm listed first in the job wins, on both paths
    tie = pd.DataFrame({"event_id": ["tie-1", "tie-2"], "customer_id": ["0002", "0002"],
                        "timestamp": ["2025-02-01 10:00:00"] * 2, "campaign": [CAMPAIGN] * 2,
                        "channel": ["sms"] * 2, "stage": ["exposure"] * 2, "arm": ["C", "B"]})
    # a new customer, exposed to every arm, who never bought: the features' defaults on both paths
    new = pd.DataFrame({"event_id": ["new-1", "new-2", "new-3"], "customer_id": ["0121"] * 3,
                        "timestamp": ["2025-03-01 08:00:00"] * 3, "campaign": [CAMPAIGN] * 3,
                        "channel": ["sms"] * 3, "stage": ["exposure"] * 3, "arm": ["A", "B", "C"]})
    tables["events"] = pd.concat([ev, tie, new], ignore_index=True)
    tables["customers"] = pd.concat([tables["customers"], pd.DataFrame(
        {"customer_id": ["0121"], "consent": ["yes"], "region": ["north"], "age": ["30"]})], ignore_index=True)
    # sub-second purchases just before the tie's exposure: recency in microseconds
    tx = tables["transactions"]
    tx.loc[tx.index[:3], ["customer_id", "timestamp"]] = ["0002", "2025-02-01T09:59:59.250000"]
    tx.loc[tx.index[3:6], "amount"] = 0.0  # free items: purchases without spend
    folder = write_csv_partner(tmp_path_factory.mktemp("own") / "shop", tables)
    forget_customers(list(ERASED), find_policy(folder))
    return folder


def _assert_equal(got: Audience, expected: Audience, *, money_rtol: float = 0.0) -> None:
    assert list(got.ids) == list(expected.ids) and len(got) > 0
    for name in ("arm", "converted", "orders"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    if money_rtol:
        for name in ("x", "order_value", "spend_year"):
            np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=money_rtol, err_msg=name)
    else:
        for name in ("x", "order_value", "spend_year"):
            np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)


@pytest.mark.parametrize("arms", [("A", "B", "C"), ("C", "B")])
def test_engine_audience_equals_the_pandas_path(shop, arms):
    view = PartnerView(shop, "training")
    data = view.tables()
    expected = audience(data.events, data.transactions, CAMPAIGN, arms)
    got = engine_audience(EngineOnly(view), CAMPAIGN, arms)
    _assert_equal(got, expected)
    assert len(got) > 40 and 0 < got.converted.mean() < 1 and got.x[:, 0].min() < 1 < got.x[:, 0].max() + 1
    assert (got.orders == 0).any() and (got.orders > 0).any()  # customers with and without purchases before
    owners = view.identities(pd.Series(got.ids)).str.strip()
    assert not set(owners) & {c.strip() for c in (*OPTED_OUT, *ERASED)}
    # the tie (0002 exposed to C and B at one instant): the arm listed first in the job, B here, C there
    assert arms[got.arm[list(owners).index("0002")]] == [a for a in arms if a in ("B", "C")][0]


def test_offer_list_features_equal_the_pandas_path(shop, tmp_path):
    view = PartnerView(shop, "training")
    data = view.tables()
    for as_of in ("2025-06-01", "2026-01-01"):
        when = pd.Timestamp(as_of, tz="UTC")
        ids, got = engine_features_at(EngineOnly(view), when)
        assert sorted(ids) == sorted(data.customers["customer_id"].astype(str)) == list(ids)
        expected = features_at(data.transactions, pd.Series(when, index=pd.Index(ids)))
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    # without a customers table: the buyers
    lone = write_csv_partner(tmp_path / "lone", {"transactions": own_tables(customers=30)["transactions"]})
    lone_view = PartnerView(lone, "training")
    ids, got = engine_features_at(EngineOnly(lone_view), pd.Timestamp("2025-06-01", tz="UTC"))
    tx = lone_view.tables().transactions
    assert list(ids) == sorted(set(tx["customer_id"].astype(str)))
    expected = features_at(tx, pd.Series(pd.Timestamp("2025-06-01", tz="UTC"), index=pd.Index(ids)))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_offer_list_loads_no_table(shop):
    """``partner export offers``' list from the engine alone: every consenting, non-erased customer once, by their
    own id, best value first (ties in id order)."""
    from fedinsight.tasks.uplift.export import offer_list
    from fedinsight.tasks.uplift.options import UpliftOptions
    from fedinsight.tasks.uplift.server import initial_weights, model

    options = UpliftOptions.from_run_config({"campaign": CAMPAIGN, "control": "A", "offer-costs": "B=2,C=1"})
    weights = {k: np.asarray(v).tolist() for k, v in initial_weights(options).items()}
    uplift_model = model({"campaign": CAMPAIGN, "weights": weights}, options)
    view = PartnerView(shop, "training")
    frame = offer_list(uplift_model, EngineOnly(view), "2026-01-01")
    assert len(frame) == len(view.tables().customers) > 100 and frame["customer_id"].is_unique
    assert not set(frame["customer_id"].str.strip()) & {c.strip() for c in (*OPTED_OUT, *ERASED)}
    order = list(zip(-frame["expected_value"], frame["customer_id"], strict=True))
    assert order == sorted(order) and set(frame["offer"]) <= {"none", "B", "C"}


def test_a_mapped_export_gives_the_same_audience(tmp_path):
    from support.exports import write_cn_export

    from fedinsight.partner.policy_init import init_partner

    folder = tmp_path / "cn"
    write_cn_export(folder, customers=200)
    init_partner(folder)
    view = PartnerView(folder, "training")
    data = view.tables()
    campaign = str(data.events["campaign"].dropna().iloc[0])
    expected = audience(data.events, data.transactions, campaign, ("A", "B"))
    _assert_equal(engine_audience(EngineOnly(view), campaign, ("A", "B")), expected, money_rtol=1e-12)


def test_the_pandas_paths_refusals(shop, tmp_path):
    view = EngineOnly(PartnerView(shop, "training"))
    with pytest.raises(ConfigError, match="no exposures"):
        engine_audience(view, "nobody's campaign", ("A", "B"))
    with pytest.raises(ConfigError, match=r"arm\(s\) Z"):
        engine_audience(view, CAMPAIGN, ("A", "Z"))
    tables = own_tables(customers=30)
    folder = write_csv_partner(tmp_path / "no-arm", tables)  # events without an arm column
    with pytest.raises(ConfigError, match="'arm' column"):
        engine_audience(EngineOnly(PartnerView(folder, "training")), "vip", ("A", "B"))
    arms = [("A", "B")[k % 2] for k in range(len(tables["events"]))]
    never = write_csv_partner(tmp_path / "never", {"customers": tables["customers"],
                                                   "events": tables["events"].assign(arm=arms)})
    # no transactions table: an audience that never bought, as the pandas path gives it
    bare_view = PartnerView(never, "training")
    got = engine_audience(EngineOnly(bare_view), "vip", ("A", "B"))
    _assert_equal(got, audience(bare_view.tables().events, None, "vip", ("A", "B")))
    assert not got.orders.any()
    bare = write_csv_partner(tmp_path / "bare", {"events": tables["events"].assign(arm=arms)})
    with pytest.raises(ConfigError, match="customers or transactions"):
        engine_features_at(EngineOnly(PartnerView(bare, "training")), pd.Timestamp("2025-01-01", tz="UTC"))


@pytest.mark.slow
def test_an_uplift_job_loads_no_table(shared_own_federation, tmp_path, no_whole_tables):
    run = run_in_process("uplift", shared_own_federation, tmp_path / "run")
    assert [r.error.reason for r in run.grid.replies if r.has_error()] == []
    phases = Counter(phase_of(m) for m in run.grid.sent)
    assert phases["hello"] == phases["evaluate"] == phases["policy"] == phases["economics"] == 3
    trains = [m for m in run.grid.sent if m.metadata.message_type.startswith("train")]
    assert len(trains) == 6  # two rounds (tests/support/federations.py) x three partners
    assert run.summary["rounds"] == 2 and run.summary["campaign"] == "campaign-1" and run.summary["policy"]["cells"]

"""The segments task end to end: refused before anyone computes when over budget; through Flower on CDNOW, the
ledgers charged as planned and the DP centres close to non-private k-means on the same pooled customers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.federations import PARTNER_NAMES, run_in_process

from fedinsight.core.errors import BudgetExceededError
from fedinsight.tasks.segments import kmeans


@pytest.fixture(scope="module")
def federation(shared_own_federation):
    return shared_own_federation  # the session's own federation (tests/conftest.py): these tests only read it


def test_a_job_over_budget_is_refused_before_any_partner_computes(federation, tmp_path, monkeypatch):
    computed = []
    monkeypatch.setattr(kmeans, "histogram", lambda *a, **k: computed.append("histogram"))
    monkeypatch.setattr(kmeans, "cluster_stats", lambda *a, **k: computed.append("stats"))
    with pytest.raises(BudgetExceededError, match="before any partner computed"):
        run_in_process("segments", federation, tmp_path, budget=0.5, epsilon=1.0)
    assert computed == []


def test_segments_and_the_model_file_hold_no_customer(federation, tmp_path):
    run = run_in_process("segments", federation, tmp_path, k=3, iterations=2, epsilon=2.0)
    segments = run.summary["segments"]
    assert len(segments) == 3 and all(s["words"] for s in segments)
    for s in segments:  # a shown size has its interval; a hidden one has neither
        assert (s["size"] is None) == s["suppressed"] == (s["ci95"] is None)
        assert s["suppressed"] or s["size"] >= 50
    model = json.loads((tmp_path / "segments.json").read_text())
    assert set(model) == {"kind", "version", "as_of", "features", "caps", "centres", "words", "currency"}
    assert np.asarray(model["centres"]).shape == (3, 3)


@pytest.mark.slow
def test_simulated_on_cdnow_through_flower_charges_the_plan_and_nearly_matches_centralized_kmeans(simulated_runs):
    from fedinsight.partner.view import PartnerView
    from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
    from fedinsight.tasks.segments.baselines import best_kmeans
    from fedinsight.tasks.segments.features import customer_vectors
    from fedinsight.tasks.segments.options import SegmentsOptions

    # `simulate segments --dataset cdnow --partners 3 --epsilon 1` on Flower's runtime, the run the report tests
    # also read (tests/support/runs.py)
    tmp_path = simulated_runs["segments"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    options = SegmentsOptions(epsilon=1.0, as_of="1998-07-01", delta=summary["privacy"]["delta"])  # the job's
    planned = compose_epsilon(options.noise().events(), options.delta)
    assert planned == pytest.approx(1.0, rel=1e-5)
    assert summary["privacy"]["epsilon_charged"] == pytest.approx(planned, rel=1e-6)
    coordinator = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    own = PrivacyLedger(f"sqlite:///{tmp_path / 'partner-ledgers.db'}")
    for partner in summary["partner_ids"]:
        assert coordinator.status(partner).epsilon_spent == pytest.approx(planned, rel=1e-6)
        assert compose_epsilon(own.job_events(partner, summary["job_id"]), options.delta) == pytest.approx(planned,
                                                                                                           rel=1e-6)
    # non-private k-means on the very customers the partners' views hand over, pooled here
    folders = sorted((tmp_path / "partners").iterdir())
    x = np.concatenate([customer_vectors(PartnerView(f, "analytics").tables().transactions, options.as_of,
                                         options.names).to_numpy() for f in folders if f.is_dir()])
    central = kmeans.cost(x, best_kmeans(x, options.k))
    ratio = kmeans.cost(x, np.asarray(summary["centres"])) / central
    assert ratio <= 1.5
    assert summary["baselines"]["cost_ratio"] == pytest.approx(ratio, rel=0.05)  # the simulation's own figure
    assert "Customer segments" in (tmp_path / "report.html").read_text()


def test_a_partner_exports_its_own_ids_of_consenting_non_erased_customers_only(federation, tmp_path):
    import pandas as pd
    from support.federations import PARTNER_NAMES

    from fedinsight.cli import main

    run_in_process("segments", federation, tmp_path, k=3, iterations=2, epsilon=2.0)
    partner = PARTNER_NAMES[0]
    out = tmp_path / "seg.csv"
    assert main(["partner", "export", "segments", "--model", str(tmp_path / "segments.json"), "--partner-data",
                 str(federation.folder(partner)), "--out", str(out)]) == 0
    frame = pd.read_csv(out, dtype={"customer_id": str})
    assert len(frame) > 50 and frame["customer_id"].notna().all()
    assert all(i.startswith("member-") for i in frame["customer_id"])  # the partner's own ids, on the partner
    assert not set(frame["customer_id"]) & set(federation.excluded[partner])
    assert set(frame["segment"]) <= {1, 2, 3} and frame["segment_words"].str.len().gt(0).all()
    assert main(["partner", "export", "segments", "--model", str(tmp_path / "summary.json"), "--partner-data",
                 str(federation.folder(partner)), "--out", str(tmp_path / "other.csv")]) != 0  # not a model


def test_more_features_run_through_the_contract_in_each_partners_own_time_zone(federation, tmp_path):
    features = "recency,frequency,monetary,tenure,evening"
    run = run_in_process("segments", federation, tmp_path, k=3, iterations=1, epsilon=2.0, features=features)
    assert run.summary["messages"]["violations"] == []
    assert run.summary["features"] == features.split(",")
    assert np.asarray(run.summary["centres"]).shape == (3, 5)
    histogram = next(r for r in run.session.guard.manifest.releases if r.reply == "histogram")
    assert histogram.fields == {"histogram": (3**5,)}  # the default grid for five features


def test_a_partner_without_purchases_is_named_and_nothing_is_charged(federation, tmp_path):
    from fedinsight.core.errors import FedinsightError
    from fedinsight.privacy.ledger import PrivacyLedger

    # a reference date before every purchase: each partner has no customer to segment
    with pytest.raises(FedinsightError, match="has no customer with a purchase before 1990-01-01") as refused:
        run_in_process("segments", federation, tmp_path, **{"as-of": "1990-01-01"})
    assert any(f"partner {name} has no customer" in str(refused.value) for name in PARTNER_NAMES)
    ledger = tmp_path / "ledger.db"
    assert not ledger.exists() or PrivacyLedger(f"sqlite:///{ledger}").partners() == []  # nothing charged


def test_k_range_picks_k_for_free_and_the_partners_follow_it(federation, tmp_path):
    run = run_in_process("segments", federation, tmp_path, **{"k-range": "2-6"}, epsilon=2.0)
    summary = run.summary
    choice = summary["k_choice"]
    assert 2 <= choice["chosen"] <= 6 and choice["epsilon"] == 0.0
    assert summary["k"] == choice["chosen"] == len(summary["segments"]) == len(summary["centres"])
    assert summary["privacy"]["epsilon_charged"] == pytest.approx(2.0, rel=1e-5)  # the same charge as a fixed k
    assert run.session.guard.summary()["violations"] == []  # replies held to the chosen k's shapes


def test_channel_mix_and_funnel_segments_on_own_files_charge_the_plan_and_speak_of_channels(federation, tmp_path):
    from fedinsight.privacy.ledger import compose_epsilon
    from fedinsight.tasks.segments.options import SegmentsOptions

    run = run_in_process("segments", federation, tmp_path, k=3, iterations=2, epsilon=2.0,
                         features="recency,frequency,channel-mix,funnel", channels="app,web")
    summary = run.summary
    assert summary["features"] == ["recency", "frequency", "channel:app", "channel:web", "funnel"]
    planned = compose_epsilon(SegmentsOptions(epsilon=2.0, iterations=2, k=3).noise().events(), 1e-6)
    assert summary["privacy"]["epsilon_charged"] == pytest.approx(planned, rel=1e-6)  # same charge as 3 features
    shown = [s for s in summary["segments"] if not s["suppressed"]]
    assert shown and all(any(w in s["words"] for w in ("app", "web")) for s in shown)
    model = json.loads((tmp_path / "segments.json").read_text())
    assert model["caps"] == {"recency": 730.0, "frequency": 50.0, "channel:app": 1.0, "channel:web": 1.0,
                             "funnel": 1.0}
    assert np.asarray(model["centres"]).shape == (3, 5)

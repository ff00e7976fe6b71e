"""The uplift task end to end: bad campaigns refused before any budget; on an own mapped-in-place federation (its
A/B campaign, arm A as the hold-out) the releases, the charge and a partner's own offer list; through Flower from
the CLI on the built-in synthetic data with its planted offers."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from support.federations import PARTNER_NAMES, run_in_process

from fedinsight.core.errors import FedinsightError
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks.uplift.options import UpliftOptions
from fedinsight.tasks.uplift.server import manifest


@pytest.fixture(scope="module")
def federation(shared_own_federation):
    return shared_own_federation  # the session's own federation (tests/conftest.py): these tests only read it


@pytest.mark.parametrize(("extra", "says"), [
    ({"offer-costs": "C=2"}, "arm.s. C have no exposures"),  # an offer arm the campaign does not have
    ({"campaign": "no-such-campaign"}, "no exposures"),
    ({"offer-costs": ""}, "--offer-costs"),  # missing costs
])
def test_a_campaign_that_cannot_serve_the_job_is_refused_before_any_budget(federation, tmp_path, extra, says):
    with pytest.raises(FedinsightError, match=says):
        run_in_process("uplift", federation, tmp_path, **extra)
    ledger = tmp_path / "ledger.db"
    assert not ledger.exists() or PrivacyLedger(f"sqlite:///{ledger}").partners() == []  # nothing charged


def test_own_data_job_releases_qini_and_policy_counts_and_a_partner_lists_its_own_customers(federation, tmp_path):
    from fedinsight.cli import main

    run = run_in_process("uplift", federation, tmp_path)  # campaign-1, control A, offer B (support.federations)
    summary = run.summary
    assert summary["messages"]["violations"] == [] and summary["offers"] == ["B"]
    released = summary["metrics"]["federated"]["B"]
    assert released["curve"]["share"][0] == 0.0 and released["curve"]["share"][-1] == pytest.approx(1.0)
    cells = summary["policy"]["cells"]
    assert {(c["offer"], c["tier"]) for c in cells} == {(o, t) for o in ("none", "B") for t in ("low", "mid", "high")}
    for c in cells:  # a shown count has its interval; a hidden one has neither
        assert (c["customers"] is None) == c["suppressed"] == (c["ci95"] is None)
    model = json.loads((tmp_path / "uplift_model.json").read_text())
    assert model["arms"] == ["A", "B"] and model["costs"] == {"B": 2.0}
    partner = PARTNER_NAMES[0]
    out = tmp_path / "offers.csv"
    assert main(["partner", "export", "offers", "--model", str(tmp_path / "uplift_model.json"), "--partner-data",
                 str(federation.folder(partner)), "--as-of", "2026-01-01", "--out", str(out)]) == 0
    frame = pd.read_csv(out, dtype={"customer_id": str})
    assert len(frame) > 50 and all(i.startswith("member-") for i in frame["customer_id"])  # its own ids
    assert not set(frame["customer_id"]) & set(federation.excluded[partner])  # no opted-out or erased customer
    assert set(frame["offer"]) <= {"none", "B"}
    assert (frame.loc[frame["offer"] == "B", "expected_value"] > 0).all()  # an offer only when it pays
    assert (frame.loc[frame["offer"] == "none", "expected_value"] == 0).all()
    assert main(["partner", "export", "offers", "--model", str(tmp_path / "summary.json"), "--partner-data",
                 str(federation.folder(partner)), "--as-of", "2026-01-01", "--out", str(tmp_path / "x.csv")]) == 2

    # a copy of the partner where some customers refuse marketing only: off the offer list (the list's purpose),
    # though they still consent to training; --purpose training lists them again
    import shutil

    shop = tmp_path / "shop"
    shutil.copytree(federation.folder(partner), shop)
    customers = pd.read_csv(shop / "customers.csv", dtype=str)
    refused = set(frame["customer_id"][::4])
    customers["consent_marketing"] = ~customers["customer_id"].isin(refused)
    customers.to_csv(shop / "customers.csv", index=False)
    args = ["partner", "export", "offers", "--model", str(tmp_path / "uplift_model.json"), "--partner-data", str(shop),
            "--as-of", "2026-01-01"]
    assert main([*args, "--out", str(tmp_path / "marketing.csv")]) == 0
    marketing = pd.read_csv(tmp_path / "marketing.csv", dtype={"customer_id": str})
    assert refused and not set(marketing["customer_id"]) & refused
    assert set(marketing["customer_id"]) == set(frame["customer_id"]) - refused
    assert main([*args, "--purpose", "training", "--out", str(tmp_path / "training.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "training.csv", dtype={"customer_id": str})["customer_id"]) == \
        set(frame["customer_id"])
    assert main([*args, "--purpose", "astrology", "--out", str(tmp_path / "y.csv")]) == 2
    assert not (tmp_path / "y.csv").exists()


@pytest.mark.slow
def test_simulate_uplift_from_the_cli_on_synthetic_offers_charges_the_plan_and_reports(tmp_path):
    from fedinsight.cli import main

    out = tmp_path / "run"
    assert main(["simulate", "uplift", "--customers", "4000", "--partners", "2", "--rounds", "2", "--cpus", "2",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["offers"] == ["discount", "gift"] and summary["settings"]["offer_costs"] == "discount=4,gift=3"
    options = UpliftOptions(offer_costs="discount=4,gift=3", rounds=2, delta=summary["privacy"]["delta"])  # the job's
    planned = compose_epsilon(manifest(options, "uplift").events(), options.delta)
    assert summary["privacy"]["epsilon_charged"] == pytest.approx(planned, rel=1e-6)
    base = summary["baselines"]
    for offer in ("discount", "gift"):  # simulation-only references on the same held-out customers
        assert {"centralized", "random", "federated_exact"} <= set(base) and offer in base["centralized"]
    assert set(summary["economics"]) == {"discount", "gift"}
    report = (out / "report.html").read_text()
    assert "who the offers of" in report and "Offer policy" in report


def test_a_tent_basis_job_sends_only_its_declared_shapes_and_its_model_file_exports(federation, tmp_path):
    # the manifest follows --basis (tent arrays are wider than hinge ones): a job whose arrays were declared with the
    # hinges' shapes would be stopped as a violation; the model file names its basis and the export rebuilds it
    from fedinsight.cli import main

    run = run_in_process("uplift", federation, tmp_path, basis="tent", rounds=2)
    assert run.summary["messages"]["violations"] == []
    model = json.loads((tmp_path / "uplift_model.json").read_text())
    assert model["basis"] == "tent" and len(model["weights"]["arm_heads.weight"][0]) == 5 * (4 + 2)
    assert main(["partner", "export", "offers", "--model", str(tmp_path / "uplift_model.json"), "--partner-data",
                 str(federation.folder(PARTNER_NAMES[0])), "--as-of", "2026-01-01",
                 "--out", str(tmp_path / "offers.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "offers.csv")) > 50

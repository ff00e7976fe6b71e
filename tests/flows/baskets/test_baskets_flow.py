"""The baskets task end to end: refused before anyone computes when over budget or when a partner has nothing to
count; in-process on a federation nobody here named; and through Flower from the CLI on two partners' own mapped
exports (slow)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from support.federations import own_federation, run_in_process

from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.privacy.ledger import PrivacyLedger, threshold_delta
from fedinsight.tasks.baskets import client


@pytest.fixture(scope="module")
def federation(shared_own_federation):
    return shared_own_federation  # the session's own federation (tests/conftest.py): these tests only read it


def _spy(monkeypatch) -> list[str]:  # noqa: ANN001
    computed: list[str] = []
    monkeypatch.setattr(client, "item_counts", lambda *a, **k: computed.append("items"))
    monkeypatch.setattr(client, "candidate_counts", lambda *a, **k: computed.append("pairs"))
    return computed


def test_a_job_over_budget_is_refused_before_any_partner_computes(federation, tmp_path, monkeypatch):
    computed = _spy(monkeypatch)
    with pytest.raises(BudgetExceededError, match="before any partner computed"):
        run_in_process("baskets", federation, tmp_path, budget=0.5, epsilon=1.0)
    assert computed == []


def test_a_partner_without_purchase_categories_stops_the_job_before_the_charge(tmp_path, monkeypatch):
    fed = own_federation(tmp_path / "partners", customers=600, seed=9)
    folder = sorted(p for p in fed.root.iterdir() if p.is_dir())[0]
    tx = pd.read_csv(folder / "transactions.csv")
    tx.drop(columns="category").to_csv(folder / "transactions.csv", index=False)
    (folder / "items.csv").unlink()  # nor a catalogue to fall back on
    computed = _spy(monkeypatch)
    with pytest.raises(ConfigError, match=rf"{folder.name}.*map a `category` column"):
        run_in_process("baskets", fed, tmp_path / "out")
    assert computed == []
    ledger = tmp_path / "out" / "ledger.db"
    assert not ledger.exists() or PrivacyLedger(f"sqlite:///{ledger}").partners() == []


def test_a_window_without_purchases_is_refused_before_the_charge(federation, tmp_path, monkeypatch):
    computed = _spy(monkeypatch)
    with pytest.raises(ConfigError, match="has no purchases with an item .* before 2000-01-01: nothing to count"):
        run_in_process("baskets", federation, tmp_path, **{"as-of": "2000-01-01"})
    assert computed == []


def test_rules_hold_only_released_numbers_with_their_intervals(federation, tmp_path):
    run = run_in_process("baskets", federation, tmp_path, epsilon=2.0, candidates=8)
    summary = run.summary
    assert summary["messages"]["violations"] == []
    assert summary["customers"] >= 50 and len(summary["candidates"]) >= 2
    for item in summary["items"]:  # a shown item has its count and share; a hidden one neither
        assert item["suppressed"] == ("customers" not in item)
        assert item["suppressed"] or item["customers"] >= 50
    for pair in summary["pairs"]:
        assert pair["customers"] >= 50 and pair["lift"] > 0
        for key in ("support", "confidence", "confidence_reverse", "lift"):
            lo, hi = pair[f"{key}_ci95"]
            assert lo <= pair[key] <= hi
    assert all(r in summary["pairs"] and r["lift_rank_bound"] > 1 for r in summary["rules"])
    assert summary["selection"]["delta"] == pytest.approx(1e-9)  # a thousandth of the job's delta (1e-6)
    # the selection's thresholding delta is on every ledger (coordinator's and partners' own), taken from the delta
    # of the budget, which the job created as its delta plus that share: the epsilon stays the job's
    assert summary["privacy"]["delta_thresholding"] == pytest.approx(summary["selection"]["delta"])
    job = run.session.job.job_id
    for name in ("ledger.db", "partners.db"):
        ledger = PrivacyLedger(f"sqlite:///{tmp_path / name}")
        for partner in run.session.partner_ids:
            assert threshold_delta(ledger.job_events(partner, job)) == pytest.approx(summary["selection"]["delta"])
    coordinator = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert {p: coordinator.status(p).epsilon_spent for p in run.session.partner_ids} == {
        p: pytest.approx(2.0, rel=1e-6) for p in run.session.partner_ids}


@pytest.mark.slow
def test_simulate_baskets_from_the_cli_on_mapped_own_exports(tmp_path, capsys):
    """Two partners' raw exports read in place through their mapping.toml. The US shop first maps no category and no
    product list: a clear error naming it, exit 2, nothing released. With its product list and the tutorial's
    mapping (order lines as interactions, the product ``Type`` as category), re-initialised, the job runs."""
    import shutil

    from support.exports import EXAMPLES, write_raw_federation, write_us_export

    from fedinsight.cli import main

    root = tmp_path / "exports"
    exports = write_raw_federation(root, customers=600)
    for name in exports:
        assert main(["partner", "init", "--data", str(root / name)]) == 0
    args = ["simulate", "baskets", "--dataset", str(root), "--epsilon", "4", "--min-group-size", "20", "--cpus", "1",
            "--json"]  # CNY and USD partners, no rate table: baskets adds up no money
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "'us shop' has no purchase category: map a `category` column" in err and "Traceback" not in err
    assert not (tmp_path / "refused" / "summary.json").exists() and not (tmp_path / "refused" / "report.html").exists()

    us = root / "us shop"
    write_us_export(us, customers=600, catalogue=True, mapping=False)  # the same orders, plus products_export.csv
    shutil.copy(EXAMPLES / "mappings" / "us.toml", us / "mapping.toml")
    assert main(["partner", "init", "--data", str(us), "--overwrite"]) == 0  # its policy, for the newly mapped table
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partner_folders"] == sorted(exports) and summary["messages"]["violations"] == []
    assert summary["privacy"]["ledger_epsilon_after"] == {name: pytest.approx(4.0) for name in exports}
    names = {c["item"] for c in summary["candidates"]}
    assert names and all(n.strip() for n in names)  # the partners' own category names, read through the mappings
    assert summary["pairs"], "no pair of the exports' categories reached 20 noisy customers"
    # simulation only: the exact figures on the pooled views. A support's error is about the pair count's noise over
    # the customers (sd / N); 6 sds bounds the largest of a few hundred pairs with overwhelming probability
    exact = summary["baselines"]
    assert 0 <= exact["support_error_pp_max"] <= 100 * 6 * summary["count_noise_sd"] / exact["customers"]
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Bought together" in report and "Lift says how many times" in report
    assert "largest support error vs exact" in report
    assert 'id="baskets-lift"' in report or "baskets-lift" in report  # the rules' lift drawn with its intervals
    raw_ids = {i for e in exports.values() for i in e.expected["customers"]["customer_id"]}
    text = json.dumps(summary, ensure_ascii=False) + report
    assert not any(i in text for i in raw_ids)  # no customer id reaches the results

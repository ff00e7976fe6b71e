"""The report states the job's reporting currency and rate table, and labels money figures with the code."""

from __future__ import annotations

import json

from fedinsight.report.page import money_label


def _run(folder, currency):
    folder.mkdir()
    summary = {"task": "preflight", "job_id": "job-1", "partners": 2, "settings": {"purpose": "analytics"},
               "ltv_tiers": {"levels": [0.5, 0.9], "true_thresholds": [10.0, 90.0], "predicted_thresholds": None}}
    if currency is not None:
        summary["currency"] = currency
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return summary


def test_the_rate_table_and_each_partner_s_currency_are_shown(tmp_path):
    from fedinsight.tasks.runs import render_run_report

    record = {"reporting": "USD", "rates": {"CNY": 0.138, "EUR": 1.08},
              "partners": {"华东零售": "CNY", "plain": "not declared: taken as USD"}}
    _run(tmp_path / "run", record)
    html = render_run_report(tmp_path / "run")
    assert "amounts in USD" in html  # the page's subtitle
    assert "reporting currency <b>USD</b>" in html and "1 CNY = 0.138 USD" in html and "1 EUR = 1.08 USD" in html
    assert "华东零售" in html and "not declared: taken as USD" in html


def test_without_a_table_the_page_says_amounts_are_as_held(tmp_path):
    from fedinsight.tasks.runs import render_run_report

    _run(tmp_path / "plain", None)
    assert "amounts in" not in render_run_report(tmp_path / "plain")
    _run(tmp_path / "cny", {"reporting": None, "rates": {}, "amounts_in": "CNY",
                            "partners": {"a": "CNY", "b": "not declared"}})
    html = render_run_report(tmp_path / "cny")
    assert "No rate table: amounts are as the partners hold them (CNY)." in html and "amounts in" not in html


def test_money_labels_carry_the_code_only_when_there_is_one():
    assert money_label({"currency": {"reporting": "USD", "rates": {}}}, "mean spend") == "mean spend (USD)"
    assert money_label({}, "mean spend") == "mean spend"


def test_insights_money_charts_are_labelled_with_the_currency():
    from fedinsight.tasks.insights.report import insights_sections

    est = {"value": 120.0, "ci95": [100.0, 140.0]}
    document = {"batch_id": "b", "insights": [{
        "name": "segment-profile-rfm", "kind": "segment_profile", "epsilon": 0.5, "partners": 2,
        "query": {"by": "rfm_segment"},
        "result": {"groups": [{"rfm_segment": "loyal", "customers": est, "mean_spend": est}]}}]}
    _, (with_code,) = insights_sections(document, "USD")
    _, (without,) = insights_sections(document)
    assert "mean spend (USD)" in with_code.html() and "mean spend (" not in without.html()

"""Run reports: written by every simulate, rendered correctly in a real headless Chromium, served by the API.

The slow tests run three short real simulations (propensity on CDNOW, insights on synthetic data,
recommendation on MovieLens-100K) through the CLI and open each report in Chromium: every chart must
have drawn (an SVG with a real size and marks), nothing may be logged as an error, and the page may
load nothing but itself. Screenshots are saved in the test's temp folder.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from support.browser import inspect_page, require_chromium
from support.sessions import session_for

from fedinsight.cli import main

EXPECTED_CHARTS = {
    "propensity": {"propensity-learning", "propensity-roc", "propensity-calibration", "propensity-gain",
                   "privacy-budget"},
    "recommend": {"recommend-learning", "recommend-ranking", "recommend-exploration", "privacy-budget"},
    "insights": {"segment-profile-rfm", "funnel-by-channel", "ab-lift", "golden-hours", "channel-response",
                 "ltv-tiers", "privacy-budget"},
    "segments": {"segments-sizes", "privacy-budget"},
    "baskets": {"baskets-lift", "privacy-budget"},
    "uplift": {"uplift-qini", "privacy-budget"},
}

CURVE_CHARTS = {"propensity-roc", "propensity-gain"}
"""Their tooltip sits on a thin curve, which a point inside the curve's bounding box need not touch."""
NOTHING_ON_TOP = {"golden-hours", "segment-profile-rfm", "funnel-by-channel", "funnel-by-segment", "ltv-tiers",
                  "channel-response", "recommend-ranking", "propensity-learning", "recommend-learning"}
"""Heatmap cells (invisible shapes over a bitmap), bars and learning-curve points: only other tooltip marks could
cover them (whiskers, caps and lines ignore the pointer), and none do, so every one must be reachable."""


@pytest.fixture(scope="module")
def runs(simulated_runs):
    """Short simulations of every task with a report section, through the CLI; each writes its report at the end
    (shared with the other tests that read the same runs: tests/support/runs.py)."""
    return simulated_runs


@pytest.mark.slow
@pytest.mark.parametrize("task", list(EXPECTED_CHARTS))
def test_every_chart_renders_in_headless_chromium(runs, task, tmp_path):
    require_chromium()
    report = runs[task] / "report.html"
    assert report.is_file(), "simulate must write the report at its end"
    seen = inspect_page(report.resolve().as_uri(), tmp_path / f"report-{task}.png")
    assert seen.console_errors == [] and seen.page_errors == []
    assert set(seen.requests) == {report.resolve().as_uri()}, "the page must load nothing but itself"
    names = {c["name"] for c in seen.charts}
    assert EXPECTED_CHARTS[task] <= names, EXPECTED_CHARTS[task] - names
    for chart in seen.charts:
        assert chart["width"] > 150 and chart["height"] > 80, chart
        assert chart["marks"] >= 5 and chart["texts"] >= 2, chart
        assert chart["tips"] >= 1, chart  # every chart says its numbers on hover (SVG <title>, no script)
        hover = chart["hover"]
        if chart["name"] not in CURVE_CHARTS:  # the browser's hit test lands in bars, cells and points
            assert hover["reached"] >= 1, chart  # (two models' calibration bubbles may cover each other)
        if chart["name"] in NOTHING_ON_TOP:  # here every mark must be reachable
            assert hover["reached"] == hover["tried"] >= 1, chart
    assert {"overview", "privacy", "config"} <= set(seen.sections)
    assert task in seen.title
    assert seen.screenshot is not None and seen.screenshot.stat().st_size > 20_000


@pytest.mark.slow
def test_report_states_the_run_s_own_numbers(runs):
    summary = json.loads((runs["propensity"] / "summary.json").read_text())
    html = (runs["propensity"] / "report.html").read_text()
    assert f"{summary['metrics']['federated']['auc']:.4f}" in html
    assert f"{summary['metrics']['centralized']['auc']:.4f}" in html
    assert summary["job_id"] in html
    rec = json.loads((runs["recommend"] / "summary.json").read_text())
    html = (runs["recommend"] / "report.html").read_text()
    assert f"{rec['metrics']['federated']['hr@10']:.3f}" in html
    assert f"{rec['metrics']['popularity']['hr@10']:.3f}" in html
    insights = json.loads((runs["insights"] / "insights.json").read_text())
    html = (runs["insights"] / "report.html").read_text()
    suppressed = sum(i["suppressed_groups"] for i in insights["insights"])
    total = sum(i["groups"] for i in insights["insights"])
    assert f"{suppressed} of {total}" in html
    for ins in insights["insights"]:
        assert ins["title"] in html


@pytest.mark.slow
def test_the_recorded_command_reproduces_the_run(runs, tmp_path):
    meta = json.loads((runs["insights"] / "run.json").read_text())
    argv = shlex.split(meta["command"])
    assert argv[:3] == ["fedinsight", "simulate", "insights"]
    assert "--epsilon" in argv and "--min-group-size" in argv, "defaults are spelled out"
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert main([*argv[1:], "--json"]) == 0
    first = json.loads((runs["insights"] / "summary.json").read_text())
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert [i["name"] for i in again["insights"]] == [i["name"] for i in first["insights"]]
    assert again["privacy"]["epsilon_batch"] == pytest.approx(first["privacy"]["epsilon_batch"])
    assert (tmp_path / "again" / "report.html").is_file()


# --- fast tests: hand-built runs -------------------------------------------------------------------

def _tiny_propensity_run(folder: Path, *, ledger: bool = True) -> dict:
    """A propensity run folder as the simulation writes it (curves from real arrays, a real ledger)."""
    from fedinsight.models.metrics import exact_curves, exact_metrics
    from fedinsight.privacy.ledger import PrivacyLedger, dpsgd_event

    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.3).astype(float)
    p_fed = 1 / (1 + np.exp(-(rng.normal(size=3000) + 1.1 * y - 1)))
    p_cen = 1 / (1 + np.exp(-(rng.normal(size=3000) + 1.3 * y - 1)))
    fed, cen = exact_metrics(y, p_fed), exact_metrics(y, p_cen)
    folder.mkdir(parents=True)
    summary = {
        "task": "propensity", "dataset": "cdnow", "partners": 2, "rounds": 3, "job_id": "job-tiny",
        "privacy": {"epsilon_target": 1.0, "delta": 1e-5, "non_private": False,
                    "epsilon_spent": {"retail": 0.9, "bank": 0.9}, "epsilon_spent_max": 0.9},
        "metrics": {"federated": fed, "centralized": cen,
                    "per_round": [{"round": r, "auc": fed["auc"] - 0.01 / r} for r in (1, 2, 3)]},
        "curves": {"federated": exact_curves(y, p_fed), "centralized": exact_curves(y, p_cen)},
        "settings": {"epsilon": 1.0, "rounds": 3},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    if ledger:
        book = PrivacyLedger(f"sqlite:///{folder / 'ledger.db'}")
        for pid in ("retail", "bank"):
            book.set_budget(pid, 10.0, 1e-5)
        book.charge(["retail", "bank"], dpsgd_event(2.0, 0.05, 100), job_id="job-earlier", kind="dpsgd",
                    description="earlier job", requester="test")
        book.charge(["retail"], dpsgd_event(3.0, 0.05, 100), job_id="job-tiny", kind="dpsgd",
                    description="this job", requester="test")
        book.engine.dispose()
    return summary


def test_ledger_section_splits_each_partner_s_spend_by_job(tmp_path):
    from fedinsight.privacy.ledger import PrivacyLedger
    from fedinsight.report.privacy import read_ledger

    _tiny_propensity_run(tmp_path / "run")
    spends = {s.partner_id: s for s in read_ledger(f"sqlite:///{tmp_path / 'run' / 'ledger.db'}")}
    book = PrivacyLedger(f"sqlite:///{tmp_path / 'run' / 'ledger.db'}")
    for pid in ("retail", "bank"):
        assert sum(spends[pid].per_job.values()) == pytest.approx(book.status(pid).epsilon_spent)
    assert list(spends["retail"].per_job) == ["job-earlier", "job-tiny"] and list(spends["bank"].per_job) == [
        "job-earlier"]
    # composition is sub-additive: this job's increment is below what it would cost alone
    alone = PrivacyLedger(f"sqlite:///{tmp_path / 'alone.db'}")
    alone.set_budget("x", 10.0, 1e-5)
    from fedinsight.privacy.ledger import dpsgd_event

    assert spends["retail"].per_job["job-tiny"] < alone.price("x", [dpsgd_event(3.0, 0.05, 100)])


def test_report_cli_writes_a_page_and_reports_bad_folders_plainly(tmp_path, capsys):
    run = tmp_path / "run"
    summary = _tiny_propensity_run(run)
    assert main(["report", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["task"] == "propensity" and info["charts"] >= 5 and Path(info["report"]).is_file()
    html = Path(info["report"]).read_text()
    assert f"{summary['metrics']['federated']['auc']:.4f}" in html and "job-earlier" in html
    assert "<script" not in html and not re.search(r'(src|href)\s*=\s*"(https?:|//)', html)

    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "not a finished fedinsight run" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text('{"task": "propensity", ')
    assert main(["report", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "Traceback" not in err
    assert not (broken / "report.html").exists()


def test_report_without_a_ledger_falls_back_to_the_partners_accountants(tmp_path):
    from fedinsight.tasks.runs import render_run_report as render_report

    _tiny_propensity_run(tmp_path / "run", ledger=False)
    html = render_report(tmp_path / "run")
    assert "No ledger found next to this run" in html and 'data-chart="privacy-budget"' in html


def test_api_serves_the_report_to_the_requester_admins_and_auditors(tmp_path):
    from fastapi.testclient import TestClient

    from fedinsight.coordinator.api import create_app
    from fedinsight.coordinator.jobs import job_output_dir
    from fedinsight.coordinator.state import CoordinatorState

    state = CoordinatorState(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path)
    for pid in ("retail", "bank"):
        state.ledger.set_budget(pid, 4.0, 1e-5)
    client = TestClient(create_app(state))
    created = {name: state.tokens.create(name, role) for name, role in
               (("owner", "analyst"), ("other", "analyst"), ("admin", "admin"), ("auditor", "auditor"))}
    tokens = {name: secret for name, (secret, _) in created.items()}
    tokens["admin"], tokens["auditor"] = session_for(state, tokens["admin"]), session_for(state, tokens["auditor"])
    job = state.jobs.create(task="propensity", federation="fedinsight", run_config={},
                            requester=f"token:{created['owner'][1].id}")
    running = client.get(f"/jobs/{job.id}/report", headers=_h(tokens["owner"]))
    assert running.status_code == 404 and "no results" in running.json()["detail"]
    _tiny_propensity_run(job_output_dir(tmp_path, job.id), ledger=False)
    state.jobs.mark(job.id, "running")
    state.jobs.mark(job.id, "completed")

    assert client.get(f"/jobs/{job.id}/report").status_code == 401
    assert client.get(f"/jobs/{job.id}/report", headers=_h(tokens["other"])).status_code == 403
    mine = client.get(f"/jobs/{job.id}/report", headers=_h(tokens["owner"]))
    assert mine.status_code == 200 and mine.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in mine.headers["content-security-policy"]
    assert "federation budget left" in mine.text and "ε spent per partner against its budget" not in mine.text
    for role in ("admin", "auditor"):
        full = client.get(f"/jobs/{job.id}/report", headers=_h(tokens[role]))
        assert full.status_code == 200 and 'data-chart="privacy-budget"' in full.text
        assert "retail" in full.text and "bank" in full.text


def test_a_completed_job_gets_its_report_on_the_coordinator_whoever_submitted_it(tmp_path, monkeypatch, caplog):
    """`job run --no-follow` and API submissions have no client waiting: the ServerApp's lifecycle writes it."""
    import logging

    from fedinsight.coordinator.jobs import job_lifecycle, job_output_dir
    from fedinsight.coordinator.state import CoordinatorState

    state = CoordinatorState(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path)
    for key, value in state.env().items():
        monkeypatch.setenv(key, value)

    def job(**options: object) -> tuple[str, Path]:
        created = state.jobs.create(task="propensity", federation="marketing", requester="operator",
                                    run_config={"task": "propensity", "partners": 3, **options})
        return created.id, job_output_dir(tmp_path, created.id)

    done, out = job(**{"num-server-rounds": 2, "non-private": True})
    with job_lifecycle({"job-id": done, "out-dir": str(out)}):
        _tiny_propensity_run(out, ledger=False)
    assert state.jobs.get(done).status == "completed"
    html = (out / "report.html").read_text()
    command = json.loads((out / "run.json").read_text())["command"]
    assert command == ("fedinsight job run propensity --federation marketing --config coordinator.toml "
                       "-o non-private=true -o num-server-rounds=2")  # the job record keeps options sorted
    assert command in html and 'data-chart="propensity-roc"' in html

    # a run folder the report cannot read: the job still completes, the coordinator logs why and how to retry
    broken, out = job()
    with caplog.at_level(logging.WARNING, logger="fedinsight.coordinator.jobs"), job_lifecycle(
            {"job-id": broken, "out-dir": str(out)}):
        out.mkdir(parents=True)
        (out / "summary.json").write_text("{not json")
    assert state.jobs.get(broken).status == "completed" and not (out / "report.html").exists()
    assert "no report written" in caplog.text and f"fedinsight report {out}" in caplog.text

    # a failed job gets no report
    failed, out = job()
    with pytest.raises(RuntimeError), job_lifecycle({"job-id": failed, "out-dir": str(out)}):
        _tiny_propensity_run(out, ledger=False)
        raise RuntimeError("partner vanished")
    assert state.jobs.get(failed).status == "failed" and not (out / "report.html").exists()

    # a task that writes no results (preflight) gets no report, no folder and no warning
    caplog.clear()
    quiet, out = job()
    with caplog.at_level(logging.WARNING, logger="fedinsight.coordinator.jobs"), job_lifecycle(
            {"job-id": quiet, "out-dir": str(out)}):
        pass
    assert state.jobs.get(quiet).status == "completed" and not out.exists() and caplog.text == ""

    # whatever stops the report (here an interpreter exit), the finished job is still recorded as completed
    stopped, out = job()
    monkeypatch.setattr("fedinsight.tasks.runs.write_report", lambda *a, **k: (_ for _ in ()).throw(SystemExit(3)))
    with pytest.raises(SystemExit), job_lifecycle({"job-id": stopped, "out-dir": str(out)}):
        _tiny_propensity_run(out, ledger=False)
    assert state.jobs.get(stopped).status == "completed"


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.slow
def test_api_report_page_renders_in_chromium(tmp_path):
    require_chromium()
    from fastapi.testclient import TestClient

    from fedinsight.coordinator.api import create_app
    from fedinsight.coordinator.jobs import job_output_dir
    from fedinsight.coordinator.state import CoordinatorState

    state = CoordinatorState(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path)
    client = TestClient(create_app(state))
    token = session_for(state, state.tokens.create("admin", "admin")[0])
    job = state.jobs.create(task="propensity", federation="fedinsight", run_config={}, requester="operator")
    _tiny_propensity_run(job_output_dir(tmp_path, job.id))
    state.jobs.mark(job.id, "completed")
    page = client.get(f"/jobs/{job.id}/report", headers=_h(token))
    seen = inspect_page("about:blank", tmp_path / "api-report.png", html=page.text)
    assert seen.console_errors == [] and seen.page_errors == []
    assert {"propensity-learning", "propensity-roc", "privacy-budget"} <= {c["name"] for c in seen.charts}
    assert all(c["width"] > 150 and c["marks"] >= 5 for c in seen.charts)


def test_database_passwords_never_reach_the_page_or_the_recorded_command(tmp_path):
    from fedinsight.core.redact import redact_secrets
    from fedinsight.report import record_command
    from fedinsight.tasks.runs import render_run_report as render_report

    run = tmp_path / "run"
    _tiny_propensity_run(run, ledger=False)
    summary = json.loads((run / "summary.json").read_text())
    summary["settings"]["ledger"] = "postgresql+psycopg://alice:hunter2@db.example:5432/fed"
    (run / "summary.json").write_text(json.dumps(summary))
    record_command(run, "fedinsight simulate propensity --db postgresql://alice:hunter2@db/fed --out run")
    html = render_report(run)
    assert "hunter2" not in html and "alice:***@db" in html
    assert redact_secrets("--db postgresql://a:b@h/x --out y") == "--db postgresql://a:***@h/x --out y"
    assert redact_secrets("sqlite:////tmp/ledger.db") == "sqlite:////tmp/ledger.db"


def test_bars_and_heatmap_cells_carry_their_numbers_as_escaped_svg_titles():
    from fedinsight.report.charts import bars_with_intervals, figure, heatmap, render

    with figure("tips <one>") as (fig, (ax,)):
        bars_with_intervals(ax, ["<b>champions</b>", "loyal"],
                            {"customers": [{"value": 1234.0, "ci95": [1000.0, 1468.5]}, None]})
        bars = render("tips <one>", "", fig)
    titles = re.findall(r'<g id="([^"]+)" class="tip"[^>]*><title>(.*?)</title>', bars.svg)
    assert [t for _, t in titles] == ["&lt;b&gt;champions&lt;/b&gt;: 1,234 (95 % interval 1,000 to 1,468)",
                                      "loyal: suppressed (below the minimum group size)"]
    assert all(gid.startswith("tips--one--tip-") for gid, _ in titles)  # unique per chart on a shared page

    with figure("cells") as (fig, (ax,)):
        heatmap(ax, np.array([[3.0, np.nan], [120.4, 7.0]]), ["mon", "tue"], ["09:00", "10:00"], label="x",
                group="loyal")
        cells = render("cells", "", fig)
    found = re.findall(r'class="tip"( style="pointer-events: all")?><title>(.*?)</title>', cells.svg)
    assert sorted(t for _, t in found) == ["loyal · mon 09:00: 3 customers",
                                           "loyal · mon 10:00: suppressed (below the minimum group size)",
                                           "loyal · tue 09:00: 120 customers", "loyal · tue 10:00: 7 customers"]
    # released cells are invisible shapes over the image: they must still catch the pointer
    assert {t for events, t in found if events} == {t for _, t in found if "suppressed" not in t}


def test_a_partner_named_in_chinese_is_drawn_as_text_without_warnings():
    import warnings

    from fedinsight.report.charts import figure, render

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "Glyph ... missing from font" would fail here
        with figure("cjk-partners") as (fig, axes):
            axes[0].bar(["華東 retail", "shop-us"], [1.0, 2.0])
            chart = render("cjk-partners", "budget", fig)
    assert "華東 retail" in chart.svg  # text in the SVG: the browser draws it with its own fonts

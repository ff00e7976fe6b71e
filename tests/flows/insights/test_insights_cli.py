"""`fedinsight simulate insights` on Flower's runtime, the budget running out, and `insights list|show`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedinsight.cli import main
from fedinsight.data.synth import SynthConfig, write_synthetic
from fedinsight.partner.policy_init import init_federation

BIN = Path(sys.executable).with_name("fedinsight")
KINDS = {"segment_profile", "ltv_tiers", "funnel", "ab_test", "golden_hours", "channel_response", "group_by"}


def _estimates(node) -> list[dict]:
    if isinstance(node, dict):
        if "value" in node and "ci95" in node:
            return [node]
        return [e for v in node.values() for e in _estimates(v)]
    if isinstance(node, list):
        return [e for v in node for e in _estimates(v)]
    return []


@pytest.mark.slow
@pytest.mark.e2e
def test_simulate_insights_then_budget_runs_out(tmp_path, capsys):
    data = tmp_path / "synth"
    write_synthetic(SynthConfig(customers=9_000, partners=3, seed=2), data, finalize=init_federation)
    out = tmp_path / "run"
    args = ["simulate", "insights", "--dataset", str(data), "--partners", "3", "--epsilon", "1", "--seed", "0",
            "--budget", "1.2", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["privacy"]["epsilon_spent_max"] == pytest.approx(1.0, rel=1e-3)
    assert summary == json.loads((out / "summary.json").read_text())

    doc = json.loads((out / "insights.json").read_text())
    assert {i["kind"] for i in doc["insights"]} == KINDS and doc["partners"] == 3
    noisy = 0
    for insight in doc["insights"]:
        assert insight["epsilon"] > 0 and isinstance(insight["suppressed_groups"], int)
        estimates = _estimates(insight["result"])
        assert estimates, insight["name"]
        for e in estimates:
            assert e["ci95"][0] <= e["value"] <= e["ci95"][1] and e["noise_sd"] >= 0
            noisy += e["noise_sd"] > 0  # (a share of the only released group is exactly 1)
    assert noisy > 100
    text = (out / "insights.json").read_text()
    assert "partner-0" not in text and "partner_id" not in text  # combined figures only
    assert not (out / ".federation").exists() and not list(out.glob(".federation-*"))

    # the same OUT spends from the same ledger: the second batch would overspend and is refused up front
    before = (out / "insights.json").read_text()
    proc = subprocess.run([str(BIN), *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 4, proc.stderr
    assert "remaining" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "insights.json").read_text() == before

    listed = subprocess.run([str(BIN), "insights", "list", "--db", str(out), "--json"], capture_output=True,
                            text=True, check=True)
    rows = json.loads(listed.stdout)
    assert len(rows) == len(doc["insights"]) and {r["batch_id"] for r in rows} == {doc["batch_id"]}
    assert main(["insights", "show", "ab-lift", "--db", str(out)]) == 0
    assert "ab-lift (ab_test)" in capsys.readouterr().out
    assert main(["insights", "show", "ab-lift", "--db", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == next(i for i in doc["insights"] if i["name"] == "ab-lift")
    assert shown["result"]["campaigns"][0]["campaign"] == "campaign-1"
    assert main(["insights", "show", "nope", "--db", str(out)]) == 2


def test_simulate_insights_refuses_bad_options(tmp_path):
    proc = subprocess.run([str(BIN), "simulate", "insights", "--partners", "1", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "at least 2" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([str(BIN), "simulate", "insights", "--epsilon", "0", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "epsilon" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([str(BIN), "insights", "list", "--db", str(tmp_path / "missing")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "no insight database" in proc.stderr

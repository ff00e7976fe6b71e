"""`fedinsight simulate propensity` on two partners' own exports, read in place through their mapping.toml.

The two partners hold CNY and USD: the job declares a rate table (``--currency USD --rates CNY=0.138``), which
``summary.json``, the report and the model record, and scoring reads the partner's amounts in it again.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from support.exports import write_raw_federation

from fedinsight.cli import main


@pytest.mark.slow
def test_simulate_propensity_on_mapped_exports_in_place(tmp_path, capsys):
    root = tmp_path / "exports"
    exports = write_raw_federation(root, customers=400)
    for name in exports:
        assert main(["partner", "init", "--data", str(root / name)]) == 0
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and ".fedinsight" not in p.parts}
    capsys.readouterr()
    out = tmp_path / "run"
    code = main(["simulate", "propensity", "--dataset", str(root), "--out", str(out), "--rounds", "2",
                 "--start", "2024-01-01", "--cutoff", "2025-07-01", "--end", "2026-01-01", "--cpus", "1", "--json",
                 "--currency", "USD", "--rates", "CNY=0.138"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["currency"] == {"reporting": "USD", "rates": {"CNY": 0.138},
                                   "partners": {"us shop": "USD", "华东零售 (GB18030)": "CNY"}}
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "amounts in USD" in report and "1 CNY = 0.138 USD" in report and "predicted LTV (USD)" in report
    assert summary["partner_folders"] == sorted(exports) and summary["partners"] == 2
    # at 400 customers a partner's held-out set (its own random tenth) may fall under its evaluation minimum: the
    # partner then releases nothing (suppressed), so either may; the released evaluation is a DP release whose
    # noisy count may be clamped to 0. The held-out customers are checked on the simulation-only exact evaluation
    fed = summary["metrics"]["federated"]
    assert fed["partners"] + fed["partners_suppressed"] == 2 and fed.get("n", 0.0) >= 0
    assert summary["metrics"]["federated_exact"]["n"] > 0 and summary["messages"]["violations"] == []
    assert set(summary["privacy"]["epsilon_spent"]) == set(exports)
    # the partners' files were read in place: nothing rewritten, nothing copied into the run folder
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert not (out / "partners").exists()
    raw_ids = {i for e in exports.values() for i in e.expected["customers"]["customer_id"]}
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".html"):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not any(i in text for i in raw_ids), path  # no phone number or e-mail id reaches the results
    # the partner scores its own customers, in its own ids (会员手机号), opted-out ones left out
    cn = exports["华东零售 (GB18030)"]
    scores_path = tmp_path / "scores.csv"
    assert main(["score", "propensity", "--model", str(out / "model.pt"), "--data", str(cn.folder),
                 "--out", str(scores_path), "--json"]) == 0
    scores = pd.read_csv(scores_path, dtype={"customer_id": str})
    from fedinsight.models.propensity import ModelBundle

    assert ModelBundle.load(out / "model.pt").config["rates"] == "CNY=0.138"  # scoring reads amounts in USD too
    assert set(scores["customer_id"]) <= set(cn.expected["customers"]["customer_id"]) - set(cn.opted_out)
    assert len(scores) > 0
    # the partner's target list scores in the model's reporting currency too: the same propensity per customer as
    # `score propensity` (CNY amounts read in USD; unconverted they would move every spend feature)
    targets_path = tmp_path / "targets.csv"
    assert main(["partner", "export", "targets", "--model", str(out / "model.pt"), "--partner-data", str(cn.folder),
                 "--top", "100%", "--purpose", "training", "--out", str(targets_path), "--json"]) == 0
    listed = pd.read_csv(targets_path, dtype={"customer_id": str}).set_index("customer_id")["propensity"]
    scored = scores.set_index("customer_id")["propensity"]
    assert len(listed) > 0 and set(listed.index) <= set(scored.index)
    np.testing.assert_allclose(listed.to_numpy(), scored.loc[listed.index].to_numpy(), rtol=1e-9, atol=1e-12)

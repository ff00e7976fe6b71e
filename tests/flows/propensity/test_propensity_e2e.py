"""`fedinsight simulate propensity` on Flower's real simulation runtime (Ray), then `score propensity`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fedinsight.cli import main


@pytest.mark.slow
def test_simulate_then_score_on_a_small_slice(tmp_path, capsys):
    import ray

    out = tmp_path / "run"
    # 2 x 1,000 customers: each partner's held-out tenth (~100, its own random split) stays above the 50-customer
    # evaluation minimum; at 1,200 (~60 each) a partner was suppressed in about one run in seven
    code = main(["simulate", "propensity", "--dataset", "synthetic", "--customers", "2000", "--partners", "2",
                 "--rounds", "2", "--epsilon", "1", "--delta", "1e-5", "--partition", "iid", "--model", "mlp",
                 "--seed", "1", "--out", str(out), "--cpus", "2", "--json"])
    assert code == 0
    assert not ray.is_initialized()  # the runtime is stopped when the command returns
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["task"], summary["dataset"], summary["partners"], summary["rounds"], summary["seed"]) == \
        ("propensity", "synthetic", 2, 2, 1)
    privacy = summary["privacy"]
    assert privacy["epsilon_target"] == 1.0 and privacy["delta"] == 1e-5
    assert set(privacy["epsilon_spent"]) == {"partner-0", "partner-1"}
    assert privacy["epsilon_spent_max"] == max(privacy["epsilon_spent"].values()) <= 1.0
    assert privacy["accountants_agree_with_ledger"] is True  # Opacus on the partners == the ledger
    metrics = summary["metrics"]
    # the federation's evaluation is a DP release (its n is noisy); the simulation also evaluates the released
    # model exactly, on the very customers the centralized model is evaluated on
    # a partner whose noisy held-out count falls below 50 is suppressed (charged, no values)
    assert metrics["federated"]["partners"] + metrics["federated"]["partners_suppressed"] == 2
    assert metrics["federated_exact"]["n"] == metrics["centralized"]["n"] > 0
    assert privacy["evaluation"]["releases"] == 1 and 0 < privacy["evaluation"]["epsilon"] < 1
    assert 0.5 < metrics["federated_exact"]["auc"] <= 1  # (the noisy AUC of ~200 held-out customers may be none)
    for name in ("centralized", "federated_exact"):
        assert {"auc", "log_loss", "ece", "lift_top_decile", "mae", "tier_accuracy"} <= set(metrics[name])
    assert "auc" in metrics["bgnbd"]
    assert [r["round"] for r in metrics["per_round"]] == [1, 2]  # no per-round evaluation unless planned
    assert summary["messages"]["violations"] == [] and summary["messages"]["replies_inspected"] > 0
    # the run's wall time contains the coordinator's; a DP job's partners send no timing (it grows with their
    # data, unnoised), so the partners' training time is not known to the coordinator
    assert summary["timing"]["wall_s"] >= summary["timing"]["server_wall_s"] > 0
    assert summary["timing"]["local_train_s"] is None
    assert (out / "model.pt").is_file() and (out / "ledger.db").is_file()

    scores = tmp_path / "scores.parquet"
    capsys.readouterr()
    assert main(["score", "propensity", "--model", str(out / "model.pt"), "--data", str(out / "partners" / "partner-0"),
                 "--out", str(scores), "--json"]) == 0
    frame = pd.read_parquet(scores)
    assert list(frame.columns[:5]) == ["customer_id", "propensity", "churn_probability", "expected_spend", "ltv_tier"]
    assert frame["propensity"].between(0, 1).all() and (frame["expected_spend"] >= 0).all()
    assert (frame["propensity"] + frame["churn_probability"]).round(9).eq(1).all()
    assert json.loads(capsys.readouterr().out)["customers"] == len(frame)

    # the run folder is a simulated world: other partners into it are refused, and nothing is rewritten ...
    before = {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()}
    assert main(["simulate", "propensity", "--dataset", "synthetic", "--customers", "600", "--partners", "2",
                 "--out", str(out)]) == 2
    assert "already holds the partners of another simulation" in capsys.readouterr().err
    # ... the same partners again spend from the same ledgers: refused before any partner computes
    assert main(["simulate", "propensity", "--dataset", "synthetic", "--customers", "2000", "--partners", "2",
                 "--rounds", "2", "--epsilon", "1", "--seed", "1", "--out", str(out)]) == 4
    assert "refused job" in capsys.readouterr().err
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file() and f.name != "ledger.db"
            and not f.name.endswith(("-journal", "-wal", "-shm"))} == {
        f: m for f, m in before.items() if f.name != "ledger.db"}


def test_cli_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["simulate", "propensity", "--dataset", "movielens-100k", "--out", str(tmp_path / "a")]) == 2
    assert "no purchases" in capsys.readouterr().err
    assert main(["simulate", "propensity", "--epsilon", "0", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "--epsilon must be greater than 0" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()  # refused before anything was written
    assert main(["score", "propensity", "--model", str(tmp_path / "none.pt"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "s.parquet")]) == 2
    assert "does not exist" in capsys.readouterr().err

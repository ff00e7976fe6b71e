"""`fedinsight simulate recommend` and `fedinsight recommend`: outputs, and mistakes as one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedinsight.cli import main
from fedinsight.data.federation import write_partner_folder
from fedinsight.data.partition import split_partner_tables

BIN = Path(sys.executable).with_name("fedinsight")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--partition", "rows"], "--partition must be one of"), (["--explore", "1.5"], "--explore must be less than 1"),
     (["--epsilon", "0"], "--epsilon must be greater than 0"),
     (["--noise-model", "central"], "--noise-model must be one of local, distributed-secagg"),
     (["--epsilon", "8", "--noise-model", "distributed-secagg", "--local-epochs", "2"],
      "use --sample-rate 1 and --local-epochs 1"),
     (["--epsilon", "8", "--noise-model", "distributed-secagg", "--local-epochs", "1", "--honest-partners", "11"],
      "--honest-partners must be between 1 and the number of partners (10)")],
)
def test_bad_simulate_options_exit_2_before_anything_is_written(tmp_path, capsys, option, message):
    assert main(["simulate", "recommend", *option, "--out", str(tmp_path / "out")]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_recommend_without_a_model_exits_2(tmp_path):
    proc = run("recommend", "--model", str(tmp_path), "--partner-data", str(tmp_path), "--customer", "1")
    assert proc.returncode == 2 and "not a recommender model folder" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_simulate_then_serve_on_a_small_federation(movielens, tmp_path, capsys):
    inter, users, items = movielens
    ids = users["customer_id"].iloc[:150].to_numpy()
    parts = split_partner_tables(
        {"customers": users.iloc[:150], "interactions": inter.loc[inter["customer_id"].isin(ids)], "items": items},
        ids, np.arange(150) % 3,
    )
    write_partner_folder(parts, tmp_path / "data")
    out = tmp_path / "run"
    code = main(["simulate", "recommend", "--dataset", str(tmp_path / "data"), "--partners", "3", "--rounds", "2",
                 "--epsilon", "inf", "--dim", "8", "--explore", "0.2", "--seed", "1", "--baseline-epochs", "2",
                 "--out", str(out), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    summary = json.loads((out / "summary.json").read_text())
    assert printed["job_id"] == summary["job_id"]
    assert summary["task"] == "recommend" and summary["partners"] == 3 and summary["seed"] == 1
    for model in ("federated", "centralized", "popularity", "local_only"):
        block = summary["metrics"][model]
        assert {"hr@10", "ndcg@10", "coverage"} <= set(block)
        assert 0 <= block["hr@10"] <= 1 and block["customers"] == 150
    assert summary["privacy"]["private"] is False and summary["privacy"]["epsilon_spent_max"] is None
    assert summary["timing"]["wall_s"] >= summary["timing"]["simulation_s"] > 0
    assert len(summary["metrics"]["per_round"]) == 2 and "loss" in summary["metrics"]["per_round"][0]

    partner = tmp_path / "data" / "partner-2"  # the folder is used in place: the partner serves from its own data
    customer = parts["partner-2"].customers["customer_id"].iloc[0]
    assert main(["recommend", "--model", str(out / "model"), "--partner-data", str(partner), "--customer",
                 str(customer), "--k", "5", "--json"]) == 0
    served = json.loads(capsys.readouterr().out)
    assert len(served["items"]) == 5 and all("score" in item for item in served["items"])
    proc = run("recommend", "--model", str(out / "model"), "--partner-data", str(partner), "--customer", "nobody")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "customer 'nobody' cannot be served" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_simulate_and_serve_on_partner_folders_named_anything_without_genres(movielens, tmp_path, capsys):
    """A new user's folder: partner folders named by the partners, a catalogue without genres, no --epsilon."""
    inter, users, items = movielens
    ids = users["customer_id"].iloc[:150].to_numpy()
    parts = split_partner_tables(
        {"customers": users.iloc[:150], "interactions": inter.loc[inter["customer_id"].isin(ids)],
         "items": items.drop(columns=["genres"])}, ids, np.arange(150) % 3)
    names = ["上海旗舰店", "online-shop", "Store B"]
    parts = {new: parts[old] for old, new in zip(sorted(parts), names, strict=True)}
    for name, data in parts.items():
        data.partner_id = name
    write_partner_folder(parts, tmp_path / "data")
    out = tmp_path / "run"
    code = main(["simulate", "recommend", "--dataset", str(tmp_path / "data"), "--rounds", "2", "--dim", "8",
                 "--baseline-epochs", "2", "--explore", "0", "--eval-metrics", "all", "--out", str(out), "--json"])
    assert code == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partner_ids"] == sorted(names) and summary["privacy"]["private"] is True
    assert summary["catalogue"]["attribute"] is None and summary["metrics"]["federated"]["ild"] is None
    assert "diversity unavailable" in (out / "report.html").read_text()
    recs = tmp_path / "recs.csv"
    assert main(["recommend", "--model", str(out / "model"), "--partner-data", str(tmp_path / "data" / names[0]),
                 "--all", "--out", str(recs)]) == 0
    frame = pd.read_csv(recs, dtype={"customer_id": str})
    assert set(frame["customer_id"]) == set(parts[names[0]].customers["customer_id"].astype(str))

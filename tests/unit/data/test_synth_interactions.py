"""The MovieLens-calibrated interaction generator: its degrees match the calibration, its planted tastes are what
predicts a customer's latest item, and ``data synth --interactions`` writes partner folders (or refuses)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fedinsight.data.synth_interactions import InteractionsConfig, degree_profile, generate, planted
from fedinsight.models.ranking import Catalogue, evaluation_candidates, hit_and_ndcg, leave_latest_out


def test_degrees_match_the_movielens_calibration_and_the_seed_fixes_everything():
    config = InteractionsConfig(customers=3000, items=1682, partners=4, seed=1)
    frames, truth = generate(config)
    pooled = pd.concat([t["interactions"] for t in frames.values()])
    profile = degree_profile(pooled)
    assert profile == truth["profile"]
    # log-normal with median 65 and mean 106 over 3,000 customers: sampling error of either is a few percent
    assert abs(profile["customer_degree_median"] - 65) <= 6
    assert abs(profile["customer_degree_mean"] - 106) <= 106 * 0.1
    assert profile["customer_degree_min"] == 20 and profile["customer_degree_max"] <= 0.44 * 1682 + 1
    assert 0.35 <= profile["top10pct_items_share"] <= 0.55  # MovieLens-100K: 0.43
    assert sum(len(t["customers"]) for t in frames.values()) == 3000
    again, _ = generate(config)
    assert all(again[p]["interactions"].equals(frames[p]["interactions"]) for p in frames)


def test_the_planted_tastes_predict_the_latest_item_far_better_than_popularity():
    config = InteractionsConfig(customers=800, items=600, partners=2, seed=4)
    frames, _ = generate(config)
    pooled = pd.concat([t["interactions"] for t in frames.values()])
    catalogue = Catalogue.from_ids([f"m{i}" for i in range(config.items)])
    split = leave_latest_out(pooled, catalogue)
    tastes, profiles, popularity = planted(config)
    index = np.array([int(c[1:]) for c in split.customer_ids])
    truth_scores = config.strength * tastes[index] @ profiles.T + popularity
    candidates = evaluation_candidates(split, config.items, seed=0)
    hr_truth, _ = hit_and_ndcg(np.take_along_axis(truth_scores, candidates, 1))
    pop = np.broadcast_to(popularity, truth_scores.shape)
    hr_pop, _ = hit_and_ndcg(np.take_along_axis(pop, candidates, 1))
    # 800 customers: the HR means' standard errors are < 0.02; the planted structure is worth far more than that
    assert hr_truth.mean() > hr_pop.mean() + 0.1


def test_data_synth_interactions_writes_partner_folders_or_refuses_with_nothing_written(tmp_path, capsys):
    from fedinsight.cli import main

    out = tmp_path / "ix"
    assert main(["data", "synth", "--interactions", "--customers", "300", "--items", "400", "--partners", "3",
                 "--out", str(out), "--json"]) == 0
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["partner-00", "partner-01", "partner-02"]
    assert all((out / f / "interactions.csv").is_file() and (out / f / "items.csv").is_file()
               and (out / f / "protection.toml").is_file() for f in folders)
    assert json.loads((out / "ground_truth.json").read_text())["profile"]["customers"] == 300
    capsys.readouterr()
    assert main(["data", "synth", "--interactions", "--customers", "300", "--items", "50", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "--items must be at least" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("bad", [dict(customers=2, partners=3), dict(median_degree=120.0)])
def test_bad_sizes_are_refused(bad):
    from fedinsight.core.errors import ConfigError

    with pytest.raises(ConfigError):
        InteractionsConfig(**bad).check()

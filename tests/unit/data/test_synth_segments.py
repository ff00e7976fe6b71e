"""The planted-segments generator: the task's own features of its purchases land on the planted vectors, the
planted labels are recoverable (nearest planted centre and non-private k-means), and ``data synth --segments``
writes partner folders (or refuses a bad size with nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from fedinsight.data import synth_segments
from fedinsight.data.synth_segments import CENTRES, SegmentsConfig, generate
from fedinsight.tasks.segments import kmeans
from fedinsight.tasks.segments.baselines import best_kmeans
from fedinsight.tasks.segments.features import FEATURES, customer_vectors


def test_caps_are_the_tasks():
    assert {n: FEATURES[n].cap for n in synth_segments.FEATURES} == synth_segments.CAPS


def test_features_of_the_purchases_are_the_planted_vectors_and_segments_are_recoverable():
    config = SegmentsConfig(customers=6_000, partners=3, seed=4)
    frames, labels, truth = generate(config)
    assert sum(len(t["customers"]) for t in frames.values()) == config.customers  # everyone at one partner
    tx = pd.concat([t["transactions"] for t in frames.values()])
    x = customer_vectors(tx, config.as_of, synth_segments.FEATURES)
    assert len(x) == config.customers  # every customer bought before as_of
    lab = labels.set_index("customer_id").loc[x.index]
    planted = lab[[f"planted_{f}" for f in synth_segments.FEATURES]].to_numpy()
    gap = np.abs(x.to_numpy() - planted)
    assert gap[:, 0].max() < 1e-4  # recency: exact to the second
    assert gap[:, 2].max() < 0.01  # spend: exact to a cent per purchase
    # frequency is whole purchases: the planted value rounded to a whole number of purchases, at least one
    whole = np.maximum(1, np.rint(np.expm1(planted[:, 1] * np.log1p(50.0))))
    assert np.allclose(x["frequency"].to_numpy(), np.log1p(whole) / np.log1p(50.0))
    assert gap[:, 1].mean() < 0.03
    assert truth["min_centre_distance"] > 0.4 and truth["separation_sd"] > 4
    # the separation the docstring states: nearest planted centre and non-private k-means find the planted labels
    assert adjusted_rand_score(lab["segment"], kmeans.assign(x.to_numpy(), CENTRES)) > 0.99
    assert adjusted_rand_score(lab["segment"], kmeans.assign(x.to_numpy(), best_kmeans(x.to_numpy(), 5))) > 0.99
    again, again_labels, _ = generate(config)
    assert again_labels.equals(labels) and again["partner-01"]["transactions"].equals(
        frames["partner-01"]["transactions"])  # deterministic in the seed


def test_data_synth_segments_writes_partner_folders_or_refuses_with_nothing_written(tmp_path, capsys):
    from fedinsight.cli import main

    out = tmp_path / "seg"
    assert main(["data", "synth", "--segments", "--customers", "600", "--partners", "3", "--out", str(out),
                 "--json"]) == 0
    folders = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith("partner-"))
    assert folders == ["partner-00", "partner-01", "partner-02"]
    assert all((out / f / "transactions.csv").is_file() and (out / f / "protection.toml").is_file() for f in folders)
    truth = json.loads((out / "ground_truth.json").read_text())
    assert len(truth["centres"]) == 5 and truth["window"]["end"] == "2025-12-31"
    assert len(pd.read_csv(out / "ground_truth" / "segments.csv")) == 600
    capsys.readouterr()
    assert main(["data", "synth", "--segments", "--customers", "2", "--partners", "3", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "at least one customer per partner" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_data_synth_refuses_two_kinds_of_planted_data_at_once(tmp_path, capsys):
    from fedinsight.cli import main

    out = tmp_path / "both"
    assert main(["data", "synth", "--segments", "--baskets", "--out", str(out)]) == 2
    assert "choose one of --baskets, --segments, --offers and --interactions" in capsys.readouterr().err
    assert not out.exists()

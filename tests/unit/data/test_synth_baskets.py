"""The planted co-purchase generator: its stated lifts are the data's, unrelated pairs have lift about 1, and
``data synth --baskets`` writes partner folders (or refuses a bad size with nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fedinsight.data.synth_baskets import BasketsConfig, generate, plan


def _lifts(frames) -> tuple[dict[frozenset, float], float]:  # noqa: ANN001
    tx = pd.concat([t["transactions"] for t in frames.values()])
    onehot = pd.crosstab(tx["customer_id"], tx["category"]).gt(0)
    n = len(onehot)
    share = onehot.mean()
    both = (onehot.T.astype(int) @ onehot.astype(int)) / n
    out = {}
    for a in onehot.columns:
        for b in onehot.columns:
            if a < b:
                out[frozenset((a, b))] = both.loc[a, b] / (share[a] * share[b])
    return out, n


def test_planted_lifts_are_the_datas_and_other_pairs_are_unrelated():
    config = BasketsConfig(customers=60_000, partners=3, seed=2)
    frames, truth = generate(config)
    lifts, n = _lifts(frames)
    planted = {frozenset(p["items"]): p for p in truth["pairs"]}
    for key, p in planted.items():
        # >= 0.004 x 60,000 = 240 customers with the pair: sampling sd of the lift < 5 % (seed 2: 4.8 % at most)
        assert lifts[key] == pytest.approx(p["lift"], rel=0.15), p
    unrelated = np.array([v for k, v in lifts.items() if k not in planted])
    # independent categories, among customers with a purchase: lift B (the buyers' share), a bit under 1
    assert abs(np.median(unrelated) - truth["unrelated_lift"]) < 0.03 and truth["unrelated_lift"] < 1
    strong = [p for p in truth["pairs"] if p["strong"]]
    assert len(strong) == 20 and min(p["lift"] for p in strong) > 2.5
    assert max(p["lift"] for p in truth["pairs"] if not p["strong"]) < 1.6
    assert sum(len(t["customers"]) for t in frames.values()) == config.customers  # everyone is at one partner
    assert n / config.customers == pytest.approx(truth["buyers_share"], abs=0.01)
    assert truth == plan(config)  # the truth is the plan: deterministic in the seed


def test_data_synth_baskets_writes_partner_folders_or_refuses_with_nothing_written(tmp_path, capsys):
    from fedinsight.cli import main

    out = tmp_path / "bk"
    assert main(["data", "synth", "--baskets", "--customers", "900", "--partners", "3", "--out", str(out),
                 "--json"]) == 0
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["partner-00", "partner-01", "partner-02"]
    assert all((out / f / "transactions.csv").is_file() and (out / f / "protection.toml").is_file() for f in folders)
    assert len(json.loads((out / "ground_truth.json").read_text())["pairs"]) == 25
    capsys.readouterr()
    assert main(["data", "synth", "--baskets", "--customers", "2", "--partners", "3", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "at least one customer per partner" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

"""The Python API, as a notebook uses it: only ``import fedinsight as fi`` (and a federation written like a user's).

The same tasks and option names as ``fedinsight simulate <task>``; a run's model is used on a partner's side
(its own ids back, customers who refused consent or were forgotten absent); insights come as a tidy table.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile

import pytest

import fedinsight as fi

PROPENSITY = {"rounds": 2, "start": "2024-01-01", "cutoff": "2025-07-01", "end": "2026-01-01"}
INSIGHTS = {"as_of": "2026-01-01", "only": "segment-profile-rfm,ltv-tiers,ab-lift"}


@pytest.fixture(scope="module")
def federation(shared_own_federation):
    # 2,400 customers (the session's shared own federation): the smallest partner's random held-out share stays
    # above the 50-customer evaluation floor (at 900 every partner fell below it about once in 150 runs, and the
    # exact AUC was then none; 1,500 was enough)
    return shared_own_federation


def test_the_package_lists_its_tasks_and_public_names_without_loading_them_eagerly():
    assert fi.task_names() == ["baskets", "insights", "preflight", "propensity", "recommend", "secure_training",
                               "segments", "uplift"]
    assert set(fi.__all__) >= {"Federation", "Run", "ConfigError", "FedinsightError", "simulate", "task_names"}
    assert all(getattr(fi, name) is not None for name in fi.__all__)
    with pytest.raises(AttributeError):
        _ = fi.nothing_here
    heavy = "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'flwr', 'ray', 'matplotlib'}))"
    for first, loaded in (("", "[]"), ("fi.Federation.from_folder; ", "['flwr']")):  # torch waits for a run
        found = subprocess.run([sys.executable, "-c", f"import sys, fedinsight as fi; {first}{heavy}"],
                               capture_output=True, text=True, check=True)
        assert found.stdout.strip() == loaded, first


def test_misspelt_options_unknown_tasks_and_datasets_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    fed = fi.Federation.builtin("synthetic")
    with pytest.raises(fi.ConfigError, match=r"propensity has no option 'epsilonn' \(did you mean 'epsilon'\?\)"
                                             r"; its options: .*epsilon.*rounds"):
        fed.simulate("propensity", out=tmp_path / "x", epsilonn=1.0)
    with pytest.raises(fi.ConfigError, match="unknown task 'forecast'"):
        fed.simulate("forecast", out=tmp_path / "y")
    with pytest.raises(fi.ConfigError, match="--rounds must be at least 1"):
        fed.simulate("propensity", rounds=0)
    with pytest.raises(fi.ConfigError, match="the Federation's own"):
        fed.simulate("propensity", dataset="cdnow")
    with pytest.raises(fi.ConfigError, match="unknown built-in dataset"):
        fi.Federation.builtin("iris")
    with pytest.raises(fi.ConfigError, match="holds no partner data"):
        fi.Federation.from_folder(tmp_path / "tmp")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert list((tmp_path / "tmp").iterdir()) == []  # no temporary run folder left behind


def test_a_run_refused_after_its_folder_was_made_leaves_no_temporary_folder(federation, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(fi.ConfigError, match="--as-of is required"):
        fi.Federation.from_folder(federation.root).simulate("insights")  # an own folder has no reference date
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def propensity(federation, own_simulations):
    # fi.Federation.from_folder(federation.root).simulate("propensity", out=..., **PROPENSITY), run once per session
    # (tests/flows/every_task reads the same run: support/federations.OwnSimulations)
    run = own_simulations["propensity"]
    assert {k: run.summary["settings"].get(k) for k in PROPENSITY} == PROPENSITY
    return run


@pytest.mark.slow
def test_a_propensity_model_scores_a_partners_own_customers_on_its_side(federation, propensity):
    assert isinstance(propensity, fi.Run) and propensity.summary["task"] == "propensity"
    # the federation's own evaluation is a DP release (a few hundred held-out customers here: its AUC may be
    # none); the simulation evaluates the released model exactly too
    assert propensity.metrics["federated"].get("auc") is None or 0 <= propensity.metrics["federated"]["auc"] <= 1
    assert 0.5 < propensity.metrics["federated_exact"]["auc"] <= 1.0
    assert propensity.report_path is not None and propensity.report_path.is_file()
    for partner in federation.opted_out:
        scores = propensity.model.score(partner)
        ids = set(scores["customer_id"])
        assert len(ids) > 50 and all(i.startswith("member-") for i in ids)  # the partner's own ids again
        assert not ids & set(federation.excluded[partner])  # refused consent or forgotten: never scored
        assert scores["propensity"].between(0, 1).all() and set(scores["ltv_tier"].astype(str)) <= {"low", "mid",
                                                                                                     "high"}
    with pytest.raises(fi.ConfigError, match="no partner 'nobody'.*shop-us"):
        propensity.model.score("nobody")
    with pytest.raises(fi.ConfigError, match="only an insights run releases insights"):
        _ = propensity.insights
    reopened = fi.Run.open(propensity.out_dir)  # a finished run folder, read back later
    assert reopened.summary == propensity.summary
    assert reopened.model.score("shop-us").equals(propensity.model.score("shop-us"))


@pytest.mark.slow
def test_insights_come_as_a_tidy_table_with_error_bars(own_simulations):
    # fi.Federation.from_folder(federation.root).simulate("insights", out=..., **INSIGHTS) (shared, as above)
    run = own_simulations["insights"]
    table = run.insights
    assert list(table.columns) == ["insight", "kind", "group", "measure", "value", "ci_low", "ci_high", "noise_sd",
                                   "suppressed", "epsilon"]
    assert set(table["insight"]) == set(INSIGHTS["only"].split(","))
    released = table[~table["suppressed"]]
    assert len(released) > 10 and (released["noise_sd"] > 0).all()
    assert (released["ci_low"] <= released["value"] + 1e-9).all() and (released["value"] <= released["ci_high"]
                                                                         + 1e-9).all()
    assert table.loc[table["suppressed"], "value"].map(math.isnan).all()  # never a zero for a hidden group
    rfm = released[(released["insight"] == "segment-profile-rfm") & (released["measure"] == "customers")]
    assert set(rfm["group"]) <= {"champions", "loyal", "potential", "at_risk", "hibernating"} and len(rfm) >= 3
    with pytest.raises(fi.ConfigError, match="trains no model"):
        _ = run.model


@pytest.mark.slow
def test_a_recommender_serves_a_partners_consenting_customers_on_its_side(federation, own_simulations):
    # fi.Federation.from_folder(federation.root).simulate("recommend", rounds=2, epsilon=8.0, dim=8, local_epochs=1,
    # popularity_share=0.2, catalogue_path=..., baseline_epochs=2, local_only=False) (shared, as above)
    run = own_simulations["recommend"]
    recs = run.model.recommend("shop-us", k=5)
    assert recs["customer_id"].nunique() > 50 and (recs.groupby("customer_id").size() == 5).all()
    assert not set(recs["customer_id"]) & set(federation.excluded["shop-us"])
    one = run.model.recommend("shop-us", recs["customer_id"].iloc[0], k=3)
    assert list(one["rank"]) == [1, 2, 3]
    with pytest.raises(fi.FedinsightError, match="cannot be served"):
        run.model.recommend("shop-us", federation.opted_out["shop-us"][0])

"""Options: one definition per task, the same names everywhere, old spellings still read, bad values refused."""

from __future__ import annotations

import math

import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.federation.job import JobSettings
from fedinsight.federation.options import merge_run_config
from fedinsight.tasks.insights.options import InsightsOptions
from fedinsight.tasks.propensity.options import PropensityOptions
from fedinsight.tasks.recommend.options import RecommendOptions
from fedinsight.tasks.secure_training.options import SecureTrainingOptions


def test_run_config_round_trip_uses_the_dashed_name_of_each_field():
    options = RecommendOptions(rounds=7, local_epochs=1, popularity_share=0.1, catalogue_path="items.csv")
    rc = options.to_run_config()
    assert rc["local-epochs"] == 1 and rc["popularity-share"] == 0.1 and "delta" not in rc  # unset: left out
    assert RecommendOptions.from_run_config(rc) == options
    assert options.settings()["local_epochs"] == 1 and options.settings()["epsilon"] == 1.0  # summary.json
    assert RecommendOptions(epsilon=float("inf")).settings()["epsilon"] == "inf"


def test_values_from_a_run_config_or_a_flag_are_converted_and_bounded():
    options = PropensityOptions.from_run_config({"rounds": "3", "non-private": "true", "lr": 1})
    assert options.rounds == 3 and options.non_private is True and isinstance(options.lr, float)
    for bad, message in (({"rounds": 0}, "--rounds must be at least 1"),
                         ({"rounds": 2.5}, "--rounds must be a whole number"),
                         ({"sample-rate": 0}, "--sample-rate must be greater than 0"),
                         ({"model": "forest"}, "--model must be one of logreg, mlp"),
                         ({"non-private": "perhaps"}, "--non-private must be true or false"),
                         ({"epsilon": float("nan")}, "--epsilon must be a number")):
        with pytest.raises(ConfigError, match=message):
            PropensityOptions.from_run_config(bad)
    with pytest.raises(ConfigError, match="must satisfy 0 < mid < high"):
        PropensityOptions(tier_mid=0.9, tier_high=0.8)  # checks across fields


def test_job_rows_stored_with_old_spellings_still_read():
    old = {"task": "secagg", "partners": 3, "db-url": "sqlite:///x.db", "budget-epsilon": 2.0,
           "partner-budgets": "a=0.5", "secagg-timeout": 30.0, "num-server-rounds": 4, "learning-rate": 0.2}
    job = JobSettings.from_run_config(old)
    assert (job.ledger_url, job.budget, job.caps(), job.timeout) == ("sqlite:///x.db", 2.0, {"a": 0.5}, 30.0)
    options = SecureTrainingOptions.from_run_config(old)
    assert options.rounds == 4 and options.lr == 0.2
    assert InsightsOptions.from_run_config({"suppression-margin-sd": 1.645}).suppression_margin == 1.645
    assert RecommendOptions.from_run_config({"server-opt": "fedadam", "personalize": 2}).personalize_epochs == 2


def test_partner_caps_must_name_a_partner_and_a_positive_epsilon():
    assert JobSettings(partner_caps="retail=0.5, bank=2").caps() == {"retail": 0.5, "bank": 2.0}
    for bad in ("retail", "=0.5", "retail=-1", "retail=much"):
        with pytest.raises(ConfigError, match="must be PARTNER=EPSILON"):
            JobSettings(partner_caps=bad)


def test_a_job_gets_an_id_and_the_ledger_defaults_to_the_coordinators_database(monkeypatch):
    monkeypatch.setenv("FEDINSIGHT_DB_URL", "sqlite:///coordinator.db")
    job = JobSettings.from_run_config({"task": "insights", "partners": 2})
    assert job.job_id.startswith("insights-") and job.ledger == "sqlite:///coordinator.db"
    assert not job.simulated


def test_one_run_config_from_several_groups_holds_scalars_only():
    rc = merge_run_config(JobSettings(task="recommend", partners=3), RecommendOptions(epsilon=8.0), out_dir="x")
    assert rc["task"] == "recommend" and rc["epsilon"] == 8.0 and rc["out-dir"] == "x"
    assert all(isinstance(v, str | int | float | bool) for v in rc.values())
    assert math.isfinite(RecommendOptions.from_run_config({}).epsilon)  # private by default


def test_cli_fields_carry_flag_names_help_and_requiredness():
    fields = {f.name: f for f in RecommendOptions.cli_fields()}
    assert fields["server_optimizer"].flag == "server-opt" and fields["personalize_epochs"].flag == "personalize"
    assert fields["noise_model"].choices == ("local", "distributed-secagg")
    assert all(f.help for f in fields.values()) and not any(f.required for f in fields.values())
    assert "batch" not in {f.name for f in InsightsOptions.cli_fields()}  # the framework's, not a flag

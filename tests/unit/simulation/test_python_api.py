"""The Python call of a simulation: the same tasks and option names as ``fedinsight simulate <task>``."""

from __future__ import annotations

import pytest

import fedinsight as fi
from fedinsight.core.errors import ConfigError


def test_the_package_lists_its_tasks_without_loading_them_eagerly():
    assert fi.task_names() == ["insights", "preflight", "propensity", "recommend", "secure_training"]
    assert set(fi.__all__) >= {"Federation", "simulate", "task_names", "FedinsightError"}
    with pytest.raises(AttributeError):
        _ = fi.nothing_here


def test_unknown_settings_and_datasets_are_refused_before_anything_runs(tmp_path):
    fed = fi.Federation.builtin("synthetic")
    with pytest.raises(ConfigError, match="propensity has no setting epsilonn"):
        fed.simulate("propensity", out=tmp_path / "x", epsilonn=1.0)
    with pytest.raises(ConfigError, match="unknown task"):
        fed.simulate("forecast", out=tmp_path / "y")
    with pytest.raises(ConfigError, match="unknown built-in dataset"):
        fi.Federation.builtin("iris")
    with pytest.raises(ConfigError, match="holds no partner data"):
        fi.Federation.from_folder(tmp_path)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_a_folder_simulates_by_name_with_the_commands_option_names(tmp_path):
    from support.federations import own_federation

    federation = own_federation(tmp_path / "partners", customers=900)
    run = fi.Federation.from_folder(federation.root).simulate("preflight", out=tmp_path / "run", purpose="training")
    assert run.summary["task"] == "preflight" and run.summary["ok"] is True
    assert [r["partner"] for r in run.summary["results"]] == sorted(p.name for p in federation.root.iterdir()
                                                                    if p.is_dir())
    assert run.report_path is not None and run.report_path.is_file()

"""A folder of partner folders decides how many partners a simulation has, for every task.

Each task has its own default partner count for built-in datasets (3 or 10); a folder with 2 partners must
be simulated with 2 whatever the task, without ``--partners`` (``simulate insights`` once asked Flower for 3
and failed on the missing third folder).
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.federation import registry
from fedinsight.simulation import run as driver
from fedinsight.simulation.options import SimulationOptions
from fedinsight.tasks import TASKS


class Reached(Exception):
    """Raised in place of Flower's runtime: the simulation got as far as starting it."""


@pytest.fixture(scope="module")
def two_partners(tmp_path_factory):
    from support.federations import own_federation, task_options

    root = tmp_path_factory.mktemp("own") / "partners"
    federation = own_federation(root, customers=600)
    shutil.rmtree(root / "bank_eu")  # 2 partners left: 華東 retail, shop-us
    return federation, task_options


def _python_options(task: str, federation: Any, task_options: Any) -> dict[str, Any]:
    keys = registry.get(task).options.run_config_keys()
    options = {keys[k]: v for k, v in task_options(task, federation).items()}
    if task == "recommend":  # no baselines worth training here: only the partner count matters
        options.update(local_only=False, baseline_epochs=1)
    return options


@pytest.mark.parametrize("task", sorted(t.name for t in TASKS))
def test_every_task_simulates_a_folder_with_its_own_partner_count(task, two_partners, tmp_path, monkeypatch):
    federation, task_options = two_partners
    started: dict[str, Any] = {}

    def fake_runtime(run_config: dict[str, Any], num_partners: int, **_: Any) -> None:
        started.update(run_config, num_partners=num_partners)
        raise Reached

    monkeypatch.setattr(driver, "run_simulation", fake_runtime)
    sim = SimulationOptions(dataset=str(federation.root), out=str(tmp_path / "run"))
    spec = registry.get(task)
    assert spec.default_partners != 2  # else this test would prove nothing
    if spec.min_partners > 2:
        with pytest.raises(ConfigError, match=rf"at least {spec.min_partners} partners \(got 2\)"):
            driver.simulate(task, sim, _python_options(task, federation, task_options))
        assert not (tmp_path / "run").exists()  # refused before anything was written
        return
    with pytest.raises(Reached):
        driver.simulate(task, sim, _python_options(task, federation, task_options))
    assert started["num_partners"] == 2 and started["partners"] == 2


def test_partners_that_disagree_with_the_folder_are_refused_before_anything_is_written(two_partners, tmp_path):
    federation, _ = two_partners
    sim = SimulationOptions(dataset=str(federation.root), partners=3, out=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="holds 2 partners"):
        driver.simulate("preflight", sim, {"purpose": "training"})
    assert not (tmp_path / "run").exists()

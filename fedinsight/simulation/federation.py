"""A federation to simulate, as a Python object.

:class:`Federation` is :class:`~fedinsight.simulation.partners.Partners` (partner folders on this machine, used
in place, whatever they are called) plus :meth:`Federation.simulate`, the Python call of
``fedinsight simulate <task>``.

It sits above the run driver (``simulation.run``), which only needs the partners: the driver never imports
this module, so the two do not import each other.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fedinsight.core.errors import ConfigError
from fedinsight.federation import registry
from fedinsight.federation.options import read_option_file
from fedinsight.simulation.options import SimulationOptions
from fedinsight.simulation.partners import Partners
from fedinsight.simulation.run import Run, simulate


class Federation(Partners):
    """Partner folders under ``root`` (one per partner, in name order) that tasks can be simulated on."""

    def simulate(self, task: str, *, out: str | Path | None = None, **settings: Any) -> Run:
        """Run ``task`` on these partners (the Python call of ``fedinsight simulate <task>``): ``settings`` are the
        task's options and the simulation's (``epsilon=1, rounds=20, partner_caps=...``), by the same names as
        the command's flags (a file option such as insights' ``spec`` may name a file); a run folder is made under
        the system's temporary folder unless ``out`` is given.
        Returns the :class:`~fedinsight.simulation.run.Run` (``.summary``, ``.metrics``, ``.report_path``)."""
        spec = registry.get(task)
        sim_names = set(SimulationOptions.run_config_keys().values())
        task_names = set(spec.options.run_config_keys().values())
        unknown = sorted(set(settings) - sim_names - task_names)
        if unknown:
            raise ConfigError(f"{spec.name} has no setting {', '.join(unknown)} (its options: "
                              f"{', '.join(sorted(task_names))})")
        for name in spec.options.file_fields():  # spec="insights.toml": a file on this machine, read here
            if isinstance(settings.get(name), str | Path):
                settings[name] = read_option_file(name, settings[name])
        folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"fedinsight-{spec.name}-"))
        sim = SimulationOptions(**{k: v for k, v in settings.items() if k in sim_names and k != "dataset"},
                                dataset=self.dataset, out=str(folder))
        return simulate(spec.name, sim, {k: v for k, v in settings.items() if k in task_names})

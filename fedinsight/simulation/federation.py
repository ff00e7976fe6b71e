"""A federation to simulate, as a Python object: the notebook's way in.

:class:`Federation` is :class:`~fedinsight.simulation.partners.Partners` (partner folders on this machine, used
in place, whatever they are called) plus :meth:`Federation.simulate`, the Python call of
``fedinsight simulate <task>``::

    import fedinsight as fi

    fed = fi.Federation.from_folder("data/partners")       # or fi.Federation.builtin("cdnow")
    run = fed.simulate("propensity", epsilon=1, rounds=20)
    run.summary, run.metrics, run.report_path
    run.model.score("shop-us")                              # on that partner's side, its own ids
    fed.simulate("insights", as_of="2026-01-01").insights   # a tidy table with error bars

It sits above the run driver (``simulation.run``), which only needs the partners: the driver never imports
this module, so the two do not import each other.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fedinsight.core.errors import ConfigError
from fedinsight.federation import registry
from fedinsight.federation.currency import rates_text
from fedinsight.federation.options import check_names, read_option_file
from fedinsight.simulation.options import SimulationOptions
from fedinsight.simulation.partners import Partners
from fedinsight.simulation.run import Run, simulate

FEDERATION_DECIDES = ("dataset", "out")
"""Simulation options a Federation fixes itself: its own dataset, and ``out=`` (an argument of ``simulate``)."""


class Federation(Partners):
    """Partner folders under ``root`` (one per partner, in name order) that tasks can be simulated on."""

    def simulate(self, task: str, *, out: str | Path | None = None, verbose: bool = False, **settings: Any) -> Run:
        """Run ``task`` on these partners (the Python call of ``fedinsight simulate <task>``).

        ``settings`` are the task's options and the simulation's (``epsilon=1, rounds=20, partners=5``,
        ``currency="USD", rates={"CNY": 0.138}`` or ``rates="rates.toml"`` ...), by
        the command's flag names with ``_`` for ``-`` (a file option such as insights' ``spec`` may name a file);
        a misspelt one is a ConfigError listing them all. A run folder is made under the system's temporary
        folder unless ``out`` is given; ``verbose`` shows Flower's logs.
        Returns the :class:`~fedinsight.simulation.run.Run`.
        """
        import fedinsight.tasks  # noqa: F401 - heavy (torch): registers every task, on first use only

        spec = registry.get(task)
        if given := [k for k in FEDERATION_DECIDES if k in settings]:
            raise ConfigError(f"{', '.join(given)} is the Federation's own: use fi.Federation.from_folder(PATH) or "
                              f"fi.Federation.builtin(NAME), and simulate(..., out=FOLDER)")
        sim_names = [n for n in SimulationOptions.python_names() if n not in FEDERATION_DECIDES]
        task_names = spec.options.python_names()
        check_names(settings, sorted({*sim_names, *task_names}), what=spec.name)
        if "rates" in settings:  # rates={"CNY": 0.138} or "CNY=0.138,EUR=1.08" or a file
            settings["rates"] = rates_text(settings["rates"])
        for name in (*spec.options.file_fields(), *SimulationOptions.file_fields()):  # a file here, read here
            if isinstance(settings.get(name), str | Path):
                settings[name] = read_option_file(name, settings[name])
        options = {k: v for k, v in settings.items() if k in task_names}
        spec.options.of(options, what=spec.name)  # a bad value is refused before any folder is made
        folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"fedinsight-{spec.name}-"))
        try:
            sim = SimulationOptions(**{k: v for k, v in settings.items() if k in sim_names}, dataset=self.dataset,
                                    out=str(folder))
            return simulate(spec.name, sim, options, verbose=verbose)
        except BaseException:
            if out is None:  # the folder is ours: a refused or failed run leaves nothing behind
                shutil.rmtree(folder, ignore_errors=True)
            raise

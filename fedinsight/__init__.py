"""fedinsight: privacy-preserving federated analytics for precision marketing.

Partners keep their customer rows; they train models (Flower + Opacus DP-SGD) and compute noisy
aggregates (OpenDP) locally, and a coordinator only ever sees model updates and de-identified insights.

From Python (the same tasks and option names as ``fedinsight simulate <task>``; docs/python.md)::

    import fedinsight as fi

    fed = fi.Federation.from_folder("data/partners")        # one sub-folder per partner, any names
    run = fed.simulate("propensity", epsilon=1.0, rounds=20, start="2024-01-01", cutoff="2025-07-01",
                       end="2026-01-01")
    run.metrics["federated"]["auc"], run.report_path
    scores = run.model.score("shop-us")                     # on that partner's side: its own customer ids
    table = fed.simulate("insights", as_of="2026-01-01").insights   # released numbers with 95 % intervals
    fi.task_names()                                         # the registered tasks
    fi.Run.open("runs/propensity")                          # a finished run folder, read back

``import fedinsight`` stays light: the names below load their modules (torch, Flower) on first use.
"""

from __future__ import annotations

import os

from fedinsight.core.version import __version__

# Flower must run offline on partner machines: no telemetry, no update check, and no per-run
# `uv sync` of a fresh environment (which could pull CUDA torch). Set before flwr is imported.
for _name, _value in {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
}.items():
    os.environ.setdefault(_name, _value)

__all__ = ["ConfigError", "Federation", "FedinsightError", "Run", "__version__", "simulate", "task_names"]


def __getattr__(name: str):  # noqa: ANN202 - lazy: `import fedinsight` must stay light (no torch, no Flower)
    if name == "Federation":
        from fedinsight.simulation.federation import Federation

        return Federation
    if name == "simulate":
        from fedinsight.simulation.run import simulate

        return simulate
    if name == "Run":
        from fedinsight.simulation.run import Run

        return Run
    if name in ("FedinsightError", "ConfigError"):
        from fedinsight.core import errors

        return getattr(errors, name)
    if name == "task_names":
        def task_names() -> list[str]:
            """The names of the registered tasks."""
            from fedinsight.federation import registry
            from fedinsight.tasks import TASKS

            return sorted(t.name for t in TASKS) if TASKS else registry.names()

        return task_names
    raise AttributeError(f"module 'fedinsight' has no attribute {name!r}")

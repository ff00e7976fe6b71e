"""The coordinator's Flower ServerApp (``[tool.flwr.app.components] serverapp``).

One app serves every job type: ``run_config['task']`` names the task, and the task's module
(``fedinsight.server.<task>``) provides ``run(grid, context)``. The same code runs under the
simulation runtime (``fedinsight simulate``) and under a real SuperLink (``flwr run``).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.util import find_spec

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedinsight.core.errors import ConfigError

SERVER_TASKS: dict[str, str] = {
    "propensity": "fedinsight.tasks.propensity.server",
    "insights": "fedinsight.tasks.insights.server",
    "recommend": "fedinsight.tasks.recommend.server",
    "secagg": "fedinsight.tasks.secure_training.server",
    "preflight": "fedinsight.tasks.preflight.server",
}
"""task name -> module exposing ``run(grid: Grid, context: Context) -> None``."""

app = ServerApp()


def task_runner(task: str) -> Callable[[Grid, Context], None]:
    """The ``run`` function of a task, or a ConfigError naming the known tasks."""
    if task not in SERVER_TASKS or find_spec(SERVER_TASKS[task]) is None:
        known = ", ".join(sorted(t for t, m in SERVER_TASKS.items() if find_spec(m) is not None)) or "none"
        raise ConfigError(f"unknown task '{task}' in run config (known tasks: {known})")
    return import_module(SERVER_TASKS[task]).run


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Dispatch to the task named in the run config (recording messages if FEDINSIGHT_CAPTURE_DIR is set;
    on a coordinator, inside the job's lifecycle record)."""
    from fedinsight.coordinator.jobs import job_lifecycle
    from fedinsight.federation.capture import capture_if_requested

    with job_lifecycle(dict(context.run_config)):
        task_runner(str(context.run_config.get("task", "")))(capture_if_requested(grid), context)

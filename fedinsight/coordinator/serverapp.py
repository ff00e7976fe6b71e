"""The coordinator's Flower ServerApp (``[tool.flwr.app.components] serverapp``), built from the task registry.

One app serves every job: ``run_config['task']`` names a registered task, and the task contract's one loop
(:func:`fedinsight.federation.task.start`) runs it. The same code runs under the simulation runtime
(``fedinsight simulate``) and under a real SuperLink (``flwr run``). On a coordinator the job's record is
kept around it (:func:`~fedinsight.coordinator.jobs.job_lifecycle`); with ``FEDINSIGHT_CAPTURE_DIR`` set,
every message is recorded byte for byte (:mod:`fedinsight.federation.capture`).
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedinsight.coordinator.jobs import job_lifecycle
from fedinsight.federation import registry
from fedinsight.federation.capture import capture_if_requested
from fedinsight.federation.task import start
from fedinsight.tasks import TASKS

assert TASKS  # importing fedinsight.tasks registered every task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the job the run config names (its task's loop, inside the job's lifecycle record)."""
    task = registry.get(str(context.run_config.get("task", "")))
    with job_lifecycle(dict(context.run_config)):
        start(task, capture_if_requested(grid), context)

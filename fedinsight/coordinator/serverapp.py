"""The coordinator's Flower ServerApp (``[tool.flwr.app.components] serverapp``), built from the task registry.

One app serves every job: ``run_config['task']`` names a registered task, and the task contract's one loop
(:func:`fedinsight.federation.task.start`) runs it. The same code runs under the simulation runtime
(``fedinsight simulate``) and under a real SuperLink (``flwr run``). On a coordinator the job's record is
kept around it (:func:`~fedinsight.coordinator.jobs.job_lifecycle`); with ``FEDINSIGHT_CAPTURE_DIR`` set,
every message is recorded byte for byte (:mod:`fedinsight.federation.capture`). A job's hello refuses a node
that claims a partner id its authenticated key was not registered for (:mod:`fedinsight.coordinator.identities`).
"""

from __future__ import annotations

import os
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedinsight.coordinator.identities import FILE_NAME, read_partner_nodes
from fedinsight.coordinator.jobs import job_lifecycle
from fedinsight.coordinator.state import ENV_STATE_DIR
from fedinsight.core.errors import StateIntegrityError
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
        # on a coordinator: which node authenticated with which partner's key (None in a simulation)
        state_dir = os.environ.get(ENV_STATE_DIR)
        identities = read_partner_nodes(Path(state_dir)) if state_dir else None
        if state_dir and identities is None:  # a coordinator always records them at start: fail closed
            raise StateIntegrityError(f"{Path(state_dir) / FILE_NAME} is missing, so no partner's id can be checked "
                                      "against its key; restart the coordinator to re-register the partners' keys")
        start(task, capture_if_requested(grid), context, identities=identities)

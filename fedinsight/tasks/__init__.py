"""Every task fedinsight ships: one folder each, one entry each in :data:`TASKS`.

Importing this package registers the tasks (:mod:`fedinsight.federation.registry`); the ClientApp, the
ServerApp, the CLI, the job API, consent purposes and the run report all take them from the registry.
Adding a task: a folder ``tasks/<name>/`` whose ``__init__`` defines ``TASK`` (a
:class:`~fedinsight.federation.task.Task`), and one line below. ``docs/architecture.md`` walks through it.
"""

from __future__ import annotations

from fedinsight.federation import registry
from fedinsight.tasks import baskets, insights, preflight, propensity, recommend, secure_training, segments, uplift

TASKS = (
    propensity.TASK,
    insights.TASK,
    recommend.TASK,
    secure_training.TASK,
    preflight.TASK,
    segments.TASK,
    baskets.TASK,
    uplift.TASK,
)

for _task in TASKS:
    registry.register(_task)

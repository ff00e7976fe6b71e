"""The partner's Flower ClientApp (``[tool.flwr.app.components] clientapp``).

Runs on the partner's premises. Each task module registers its handlers on :data:`app` with the task
name as the Flower *action*, so message types read ``train.propensity``, ``evaluate.propensity``,
``query.insights`` ... Nothing here ever puts customer rows into a message.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec

from flwr.clientapp import ClientApp

app = ClientApp()

CLIENT_TASK_MODULES: tuple[str, ...] = (
    "fedinsight.client.propensity",
    "fedinsight.client.insights",
    "fedinsight.client.recommend",
    "fedinsight.client.secagg",
    "fedinsight.client.preflight",
)
"""Modules that register task handlers on ``app`` when imported (those installed are loaded)."""

for _module in CLIENT_TASK_MODULES:
    if find_spec(_module) is not None:
        import_module(_module)

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
    "fedinsight.tasks.propensity.client",
    "fedinsight.tasks.insights.client",
    "fedinsight.tasks.recommend.client",
    "fedinsight.tasks.secure_training.client",
    "fedinsight.tasks.preflight.client",
)
"""Modules that register task handlers on ``app`` when imported (those installed are loaded)."""

for _module in CLIENT_TASK_MODULES:
    if find_spec(_module) is not None:
        import_module(_module)

# The one legacy `train` handler (SecAgg+ runs only on Flower's legacy path): each fit goes to the secure fit of
# the task its config names.
from fedinsight.federation.secagg import SECAGG_MODS, legacy_train_handler  # noqa: E402
from fedinsight.tasks.recommend.secure_client import secure_fit as _recommend_secure_fit  # noqa: E402
from fedinsight.tasks.secure_training.client import secure_fit as _training_secure_fit  # noqa: E402

app.train(mods=SECAGG_MODS)(legacy_train_handler({"secagg": _training_secure_fit, "recommend": _recommend_secure_fit},
                                                 default="secagg"))

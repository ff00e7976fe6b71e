"""The coordinator's Flower ServerApp (``[tool.flwr.app.components] serverapp``).

Task handlers (federated training, federated insight queries) are registered by the modules that
implement them; this module only owns the app object Flower loads.
"""

from __future__ import annotations

from flwr.serverapp import ServerApp

app = ServerApp()

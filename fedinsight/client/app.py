"""The partner's Flower ClientApp (``[tool.flwr.app.components] clientapp``).

Runs on the partner's premises. Message handlers (train/evaluate/query) are added by the task
modules; nothing here ever puts customer rows into a message.
"""

from __future__ import annotations

from flwr.clientapp import ClientApp

app = ClientApp()

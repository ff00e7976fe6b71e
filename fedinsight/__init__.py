"""fedinsight: privacy-preserving federated analytics for precision marketing.

Partners keep their customer rows; they train models (Flower + Opacus DP-SGD) and compute noisy
aggregates (OpenDP) locally, and a coordinator only ever sees model updates and de-identified insights.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

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

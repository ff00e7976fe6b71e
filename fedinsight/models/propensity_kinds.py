"""The propensity model's kinds, in a module without torch.

Why apart from :mod:`fedinsight.models.propensity`: the propensity task's options offer them as choices, and the
options are imported wherever the task is registered (every simulation worker's ClientApp), where torch is not
needed unless a propensity job actually trains.
"""

from __future__ import annotations

MODEL_KINDS: tuple[str, ...] = ("logreg", "mlp")

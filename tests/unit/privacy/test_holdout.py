"""The one held-out split both propensity and uplift use (privacy/holdout.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.holdout import holdout_key, holdout_mask, partner_share


class _Vault:
    """An in-memory key store: what the split needs of a partner's vault."""

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}

    def save(self, name: str, data: bytes, *, kind: str, job_id: str = "", purpose: str = "") -> Path:
        self.items[name] = data
        return Path(name)

    def load(self, name: str) -> bytes:
        return self.items[name]

    def exists(self, name: str) -> bool:
        return name in self.items


def test_each_task_keeps_its_own_key_and_reuses_it():
    vault = _Vault()
    first = holdout_key(vault, "propensity-holdout-key")
    assert holdout_key(vault, "propensity-holdout-key") == first  # reused by every later job
    other = holdout_key(vault, "uplift-holdout-key")
    assert other != first and len(other) == 32  # two independent draws from OS entropy
    ids = [f"c{i}" for i in range(4000)]
    assert not np.array_equal(holdout_mask(ids, 0.2, first), holdout_mask(ids, 0.2, other))


def test_damaged_key_and_bad_share_are_refused():
    vault = _Vault()
    vault.items["k"] = b"short"
    with pytest.raises(ConfigError, match="damaged"):
        holdout_key(vault, "k")
    with pytest.raises(ConfigError, match="between 0.05 and 0.5"):
        partner_share(0.9)
    with pytest.raises(ConfigError, match="must be a number"):
        partner_share("a fifth")

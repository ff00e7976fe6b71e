"""The uplift task's held-out customers: the partner's own secret key and share, never the coordinator's.

The same rule as propensity's split (issue 14: a coordinator-chosen seed and share let two evaluations differ by
one chosen customer): a 32-byte key from OS entropy kept in the partner's vault, the partner's own ``test-share``
(node config, default 0.2), and a customer is held out iff ``HMAC-SHA256(key, token) < share``. The key is this
task's own (tasks share no state), so the uplift and propensity held-out sets are independent.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import numpy as np

from fedinsight.core.errors import ConfigError
from fedinsight.federation.task import Vault

HOLDOUT_KEY = "uplift-holdout-key"
KEY_BYTES = 32
DEFAULT_TEST_SHARE = 0.2
SHARE_RANGE = (0.05, 0.5)


def holdout_key(vault: Vault) -> bytes:
    """Created once from OS entropy, then read back from the partner's vault (concurrent first uses settle on
    the file's key)."""
    if not vault.exists(HOLDOUT_KEY):
        vault.save(HOLDOUT_KEY, secrets.token_bytes(KEY_BYTES), kind="cache", purpose="training")
    key = vault.load(HOLDOUT_KEY)
    if len(key) != KEY_BYTES:
        raise ConfigError(f"the partner's uplift holdout key in its vault ({HOLDOUT_KEY}) is damaged")
    return key


def partner_share(value: object = DEFAULT_TEST_SHARE) -> float:
    try:
        share = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"node config test-share={value!r} must be a number") from None
    lo, hi = SHARE_RANGE
    if not lo <= share <= hi:
        raise ConfigError(f"node config test-share must be between {lo} and {hi} (got {share})")
    return share


def holdout_mask(tokens: object, share: float, key: bytes) -> np.ndarray:
    """Which customers are held out: ``HMAC-SHA256(key, token)`` as a fraction of 2^64 below ``share``."""
    values = [int.from_bytes(hmac.new(key, str(t).encode(), hashlib.sha256).digest()[:8], "big")
              for t in tokens]  # type: ignore[attr-defined]
    return np.asarray(values, dtype=np.float64) / 2.0**64 < share

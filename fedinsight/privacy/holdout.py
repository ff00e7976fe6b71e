"""A partner's held-out customers: its own secret key and its own share, never the coordinator's.

Why: when the coordinator chose the held-out share and the seed of the split ("hash(seed, id) < share"), the
held-out sets of two jobs were nested, and two jobs with shares 0.2 and 0.200384 differed by exactly one
customer -- whose label the difference of the two evaluations revealed (issue 14). So the split is decided on
the partner:

- a 32-byte key drawn from OS entropy (``secrets``) the first time the partner evaluates, kept encrypted in
  its vault and reused by every later job: the coordinator never learns it;
- the share is the partner's own setting (node config ``test-share``, default 0.2, between 0.05 and 0.5);
- a customer is held out iff ``HMAC-SHA256(key, token) < share`` (:func:`holdout_mask`).

Each task names its own vault entry (``propensity-holdout-key``, ``uplift-holdout-key``): tasks share no
state, so their held-out sets are independent. This module is the one copy both tasks use (tasks may not
import each other); it knows nothing of marketing, only of keys, shares and tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fedinsight.core.errors import ConfigError

KEY_BYTES = 32
DEFAULT_TEST_SHARE = 0.2
SHARE_RANGE = (0.05, 0.5)
"""A partner's own share must lie here: below 5 % few partners reach the evaluation minimum, above 50 % too
few customers are left to train on."""


class KeyStore(Protocol):
    """What the split needs of the partner's vault (the task contract's ``Vault`` fits)."""

    def save(self, name: str, data: bytes, *, kind: str, job_id: str = "", purpose: str = "") -> Path: ...
    def load(self, name: str) -> bytes: ...
    def exists(self, name: str) -> bool: ...


def holdout_key(vault: KeyStore, name: str) -> bytes:
    """The partner's holdout key stored as ``name``: created once from OS entropy, then read back.

    The key is read back after it is written, so concurrent first uses settle on the file's key."""
    if not vault.exists(name):
        vault.save(name, secrets.token_bytes(KEY_BYTES), kind="cache", purpose="training")
    key = vault.load(name)
    if len(key) != KEY_BYTES:
        raise ConfigError(f"the partner's holdout key in its vault ({name}) is damaged")
    return key


def partner_share(value: Any = DEFAULT_TEST_SHARE) -> float:
    """The partner's own held-out share (its node config ``test-share``), checked against :data:`SHARE_RANGE`."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"node config test-share={value!r} must be a number") from None
    lo, hi = SHARE_RANGE
    if not lo <= share <= hi:
        raise ConfigError(f"node config test-share must be between {lo} and {hi} (got {share})")
    return share


def holdout_mask(tokens: Iterable[object], share: float, key: bytes) -> np.ndarray:
    """Which customers are held out: ``HMAC-SHA256(key, token) < share`` (as a fraction of 2^64).

    ``key`` is the partner's own secret key, never a seed the coordinator knows or chooses, and ``share`` is
    the partner's own: nobody else can predict or move which customers are held out. The same (key, share)
    gives the same customers in every job, so two jobs cannot differ by one held-out customer."""
    if not 0 < share < 1:
        raise ConfigError(f"test-share must be in (0, 1) (got {share})")
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise ConfigError("the holdout split needs the partner's secret key (at least 16 bytes)")
    values = [int.from_bytes(hmac.new(bytes(key), str(t).encode(), hashlib.sha256).digest()[:8], "big")
              for t in tokens]
    return np.asarray(values, dtype=np.float64) / 2.0**64 < share

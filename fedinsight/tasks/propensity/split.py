"""The held-out split of a propensity partner: its own secret key and its own share, never the coordinator's.

Why: when the coordinator chose the held-out share and the seed of the split ("hash(seed, id) < share"), the
held-out sets of two jobs were nested, and two jobs with shares 0.2 and 0.200384 differed by exactly one
customer -- whose label the difference of the two evaluations revealed (issue 14). So the split is decided
here, on the partner:

- a 32-byte key drawn from OS entropy (``secrets``) the first time the partner evaluates, kept encrypted in
  its vault (``<state-dir>/artifacts``) and reused by every later job: the coordinator never learns it;
- the share is the partner's own setting (node config ``test-share``, default 0.2, between 0.05 and 0.5);
- a customer is held out iff ``HMAC-SHA256(key, token) < share`` (:func:`~.features.holdout_mask`).

The job's ``test-share`` option is **ignored** by partners (it is kept so older job specs still parse): a
coordinator that asks for another share gets the partner's. Refusing would break every job whose default
differs from a partner's own setting, and ignoring leaves the coordinator nothing to move. Every job then
evaluates on the same held-out customers of each partner (until the data itself changes), so no two
evaluations differ by one chosen customer -- and the evaluation releases are DP anyway (:mod:`.evaluation`).

Held-out customers never take part in training: the same split serves every job, so a customer held out in
one job is never trained on in another.
"""

from __future__ import annotations

import secrets
from typing import Any

from fedinsight.core.errors import ConfigError
from fedinsight.federation.task import Vault

HOLDOUT_KEY = "propensity-holdout-key"
"""The vault artifact holding the partner's holdout key."""
KEY_BYTES = 32
DEFAULT_TEST_SHARE = 0.2
SHARE_RANGE = (0.05, 0.5)
"""A partner's own share must lie here: below 5 % few partners reach the evaluation minimum, above 50 % too
few customers are left to train on."""


def holdout_key(vault: Vault) -> bytes:
    """The partner's holdout key: created once from OS entropy, then read back from its vault.

    The key is read back after it is written, so concurrent first uses settle on the file's key."""
    if not vault.exists(HOLDOUT_KEY):
        vault.save(HOLDOUT_KEY, secrets.token_bytes(KEY_BYTES), kind="cache", purpose="training")
    key = vault.load(HOLDOUT_KEY)
    if len(key) != KEY_BYTES:
        raise ConfigError(f"the partner's holdout key in its vault ({HOLDOUT_KEY}) is damaged")
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

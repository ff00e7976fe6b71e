"""Keyed tokens for customer ids and other declared keys (HMAC-SHA256 under a partner-held key).

Why HMAC and not a plain hash: customer ids, phone numbers and e-mail addresses come from small,
guessable spaces; anyone could hash every candidate and invert a plain SHA-256. An HMAC token can
only be computed by whoever holds the partner's key, so tokens are pseudonyms only the partner can
link back (by re-tokenizing its own raw ids). Joins still work, because the same id under the same
key and namespace always gives the same token.

- **Partner tokens** (``tk_`` + 128 bits hex) use the partner's tokenization key. Different partners
  get unrelated tokens for the same person, so two partners' outputs cannot be joined by accident.
- **Link tokens** (``lk_``) use an optional collaboration-wide key that the partners share (not the
  coordinator). They let partners compute overlaps later (e.g. a private set intersection);
  ids are trimmed and case-folded first so ``A@B.com`` and ``a@b.com `` meet.

Each token is domain-separated by a namespace (the column name), so the same value in two different
key columns gives unrelated tokens. Tokens are truncated to 128 bits: collisions need ~2^64 ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives import hashes, hmac

from fedinsight.core.errors import KeyFileError
from fedinsight.privacy.keys import KeyRing, SecretKey

TOKEN_PREFIX = "tk_"
LINK_PREFIX = "lk_"
TOKEN_HEX_CHARS = 32  # 128 bits
_DOMAIN = b"fedinsight/token/v1\x00"
_LINK_DOMAIN = b"fedinsight/link/v1\x00"


class _Hmac:
    """A keyed HMAC-SHA256 whose key schedule is computed once and copied per value (≈0.8 µs/value)."""

    def __init__(self, key: SecretKey, domain: bytes, namespace: str, prefix: str) -> None:
        self._base = hmac.HMAC(key.secret, hashes.SHA256())
        self._base.update(domain + namespace.encode() + b"\x00")
        self._prefix = prefix

    def __call__(self, value: str) -> str:
        h = self._base.copy()
        h.update(value.encode("utf-8"))
        return self._prefix + h.finalize()[: TOKEN_HEX_CHARS // 2].hex()


def _map_unique(
    values: pd.Series, fn: _Hmac, normalise: Callable[[str], str], memo: dict[str, str] | None = None
) -> pd.Series:
    """Apply ``fn`` once per distinct non-null value; nulls stay null; the result is a string column."""
    present = values.notna()
    text = values[present].astype(str)
    uniques = pd.unique(text.to_numpy())
    memo = {} if memo is None else memo
    for u in uniques:
        if u not in memo:
            memo[u] = fn(normalise(u))
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    out[present] = text.map(memo).astype("string")
    return out


class Tokenizer:
    """Turns raw ids into partner tokens (and, with a collaboration key, link tokens)."""

    def __init__(self, ring: KeyRing, collaboration: KeyRing | None = None, *, memo: bool = False) -> None:
        """``memo``: remember tokens per (namespace, key) while this object lives, so a key column that
        appears in several tables is hashed once. The memo holds raw ids in memory: use it only for a
        tokenizer that is discarded right after the load (as the protection pipeline does)."""
        self.ring = ring
        self.collaboration = collaboration
        self._memo: dict[tuple[str, str], dict[str, str]] | None = {} if memo else None

    def _memo_for(self, namespace: str, key_id: str | None) -> dict[str, str] | None:
        if self._memo is None:
            return None
        return self._memo.setdefault((namespace, key_id or self.key_id), {})

    @property
    def key_id(self) -> str:
        """Id of the key new tokens are made with (not secret)."""
        return self.ring.active.key_id

    def _fn(self, namespace: str, key_id: str | None = None) -> _Hmac:
        key = self.ring.active if key_id is None else self.ring.get(key_id)
        if key is None:
            raise KeyError(key_id)
        return _Hmac(key, _DOMAIN, namespace, TOKEN_PREFIX)

    def token(self, value: str, namespace: str = "customer_id", *, key_id: str | None = None) -> str:
        """The token of one id (ids are compared exactly, after trimming surrounding spaces)."""
        return self._fn(namespace, key_id)(str(value).strip())

    def tokenize(self, values: pd.Series, namespace: str = "customer_id", *, key_id: str | None = None) -> pd.Series:
        """Tokens for a column (same index; nulls stay null) under the active key or a named ring key."""
        return _map_unique(values, self._fn(namespace, key_id), str.strip, self._memo_for(namespace, key_id))

    def tokens(self, values: Iterable[str], namespace: str = "customer_id", *, key_id: str | None = None) -> np.ndarray:
        """Tokens for a sequence of ids, as an array of str."""
        fn = self._fn(namespace, key_id)
        return np.array([fn(str(v).strip()) for v in values], dtype=object)

    def link_tokenize(self, values: pd.Series, namespace: str = "customer_id") -> pd.Series:
        """Collaboration-wide link tokens for a column; needs a collaboration key."""
        if self.collaboration is None:
            raise KeyFileError("no collaboration key configured: set collaboration-file in the policy's [keys]")
        fn = _Hmac(self.collaboration.active, _LINK_DOMAIN, namespace, LINK_PREFIX)
        return _map_unique(values, fn, lambda v: v.strip().casefold())


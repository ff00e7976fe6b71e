"""Encrypted, registered storage for anything a partner derives from its customers.

Why a module of its own: the protection pipeline removes identifiers from what a task reads, but a task also
*writes* things derived from customers (checkpoints, embeddings, feature caches, scores). Those must be
encrypted at rest under the partner's key and listed in the erasure register, so ``fedinsight partner forget``
can name the artifacts that predate a request. :class:`PartnerVault` is that one place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.core.errors import ProtectionPolicyError
from fedinsight.partner.policy import ProtectionPolicy
from fedinsight.privacy.consent import erasure_register
from fedinsight.privacy.encryption import (
    arrays_from_bytes,
    arrays_to_bytes,
    frame_from_bytes,
    frame_to_bytes,
    read_encrypted,
    state_dict_from_bytes,
    state_dict_to_bytes,
    write_encrypted,
)

ARTIFACT_KINDS: tuple[str, ...] = ("checkpoint", "embeddings", "features", "scores", "cache", "report")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


class PartnerVault:
    """Encrypted, registered storage for anything a partner derives from its customers.

    Files live in ``<state-dir>/artifacts/<name>.enc``, sealed with AES-GCM under the partner's
    encryption key and bound to their name; each save is recorded in the erasure register so
    ``fedinsight partner forget`` can list the artifacts that predate a request.
    """

    def __init__(self, policy: ProtectionPolicy) -> None:
        self.policy = policy
        self.ring = policy.encryption_ring()
        self.root = policy.state_dir / "artifacts"
        self.register = erasure_register(policy.register_url)

    def path(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise ProtectionPolicyError(f"artifact name {name!r} must be letters, digits, '.', '_' or '-'")
        return self.root / f"{name}.enc"

    def save(self, name: str, data: bytes, *, kind: str, job_id: str = "", purpose: str = "") -> Path:
        if kind not in ARTIFACT_KINDS:
            raise ProtectionPolicyError(f"artifact kind {kind!r} must be one of {', '.join(ARTIFACT_KINDS)}")
        path = write_encrypted(self.path(name), data, self.ring, context=name)
        self.register.register_artifact(name, kind, str(path), job_id=job_id, purpose=purpose)
        return path

    def load(self, name: str) -> bytes:
        return read_encrypted(self.path(name), self.ring, context=name)

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def save_frame(self, name: str, frame: pd.DataFrame, **kw: Any) -> Path:
        return self.save(name, frame_to_bytes(frame), **kw)

    def load_frame(self, name: str) -> pd.DataFrame:
        return frame_from_bytes(self.load(name))

    def save_state_dict(self, name: str, state: dict[str, Any], **kw: Any) -> Path:
        return self.save(name, state_dict_to_bytes(state), **kw)

    def load_state_dict(self, name: str) -> dict[str, Any]:
        return state_dict_from_bytes(self.load(name))

    def save_arrays(self, name: str, arrays: dict[str, np.ndarray], **kw: Any) -> Path:
        return self.save(name, arrays_to_bytes(arrays), **kw)

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        return arrays_from_bytes(self.load(name))

    def verify(self) -> list[tuple[str, str]]:
        """(name, "ok" or the error) for every stored file: proves each is encrypted and intact."""
        results: list[tuple[str, str]] = []
        if not self.root.is_dir():
            return results
        for file in sorted(self.root.iterdir()):
            name = file.name.removesuffix(".enc")
            try:
                read_encrypted(file, self.ring, context=name)
                results.append((name, "ok"))
            except Exception as exc:  # report every failure, typed or not, and keep going
                results.append((name, f"{type(exc).__name__}: {exc}"))
        return results


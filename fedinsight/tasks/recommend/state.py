"""A partner's private side of one recommender job: its customers' embeddings, its accountant's history and
its personalised item table, sealed in its vault between rounds and for serving.

Nothing here is ever sent. The file is AES-256-GCM under the partner's encryption key, bound to its name,
and listed for erasure follow-up (``partner forget`` names the jobs whose state predates a request).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedinsight.core.errors import ConfigError
from fedinsight.federation.task import Vault
from fedinsight.privacy.encryption import arrays_from_bytes, arrays_to_bytes
from fedinsight.privacy.sparse_dp import CustomerLevelAccountant


@dataclass
class CustomerState:
    """A partner's private side of one recommender job."""

    job_id: str
    customer_ids: tuple[str, ...]
    embeddings: np.ndarray  # (customers, dim) float32
    accountant: CustomerLevelAccountant = field(default_factory=CustomerLevelAccountant)
    rounds: int = 0
    personal_items: np.ndarray | None = None  # (items, dim + 1) partner-local fine-tuned item table
    popularity_released: bool = False
    blend: dict[str, object] = field(default_factory=dict)  # the served blend: weight, alone kind, lambda
    alone_items: np.ndarray | None = None  # (items, dim + 1) the partner-alone MF's item table, if that was chosen
    alone_embeddings: np.ndarray | None = None  # (customers, dim) its customer embeddings


def customer_state_name(job_id: str) -> str:
    """The vault name of a job's (encrypted) customer state."""
    return "recommend-" + re.sub(r"[^A-Za-z0-9._-]", "_", job_id) + ".customers"


def save_customer_state(vault: Vault, name: str, state: CustomerState) -> Path:
    """Seal the state in the partner's vault (AES-GCM, bound to its name, written atomically, mode 0600); the
    vault lists it as an ``embeddings`` artifact, so ``partner forget`` knows which files predate a request."""
    meta = {"job_id": state.job_id, "rounds": state.rounds, "accountant": state.accountant.history,
            "popularity_released": state.popularity_released, "blend": state.blend}
    arrays: dict[str, np.ndarray] = {
        "customer_ids": np.asarray(state.customer_ids, dtype=str),
        "embeddings": np.asarray(state.embeddings, dtype=np.float32),
        "meta": np.asarray(json.dumps(meta)),
    }
    for key in ("personal_items", "alone_items", "alone_embeddings"):
        if getattr(state, key) is not None:
            arrays[key] = np.asarray(getattr(state, key), dtype=np.float32)
    return vault.save(name, arrays_to_bytes(arrays), kind="embeddings", job_id=state.job_id, purpose="recommendation")


def load_customer_state(vault: Vault, name: str) -> CustomerState:
    """Open a state written by :func:`save_customer_state`; a modified file raises TamperedDataError."""
    if not vault.exists(name):
        raise ConfigError(f"no customer state '{name}' on this partner: train the recommender on it first")
    data = arrays_from_bytes(vault.load(name))
    meta = json.loads(str(data["meta"]))

    def optional(key: str) -> np.ndarray | None:
        value = data.get(key)
        return None if value is None else np.array(value, dtype=np.float32)

    return CustomerState(
        job_id=str(meta["job_id"]),
        customer_ids=tuple(str(c) for c in data["customer_ids"]),
        embeddings=np.array(data["embeddings"], dtype=np.float32),
        accountant=CustomerLevelAccountant([tuple(h) for h in meta["accountant"]]),  # type: ignore[misc]
        rounds=int(meta["rounds"]),
        popularity_released=bool(meta.get("popularity_released", False)),
        personal_items=optional("personal_items"),
        blend=dict(meta.get("blend", {})),
        alone_items=optional("alone_items"),
        alone_embeddings=optional("alone_embeddings"),
    )

"""Encryption at rest for everything a partner stores: AES-256-GCM (``cryptography``).

Why authenticated encryption: confidentiality alone would let a modified checkpoint or score file be
loaded silently. GCM's tag makes any change -- one flipped bit, a truncation, a file swapped for
another artifact's -- fail to load with :class:`~fedinsight.core.errors.TamperedDataError`.

File format (all of it authenticated)::

    b"FDIENC1\\n" | key-id length (1 byte) | key id (ASCII) | nonce (12 bytes) | ciphertext + 16-byte tag

The associated data is the header plus a caller-chosen *context* (the artifact's name), so a valid
file copied over another artifact's name is rejected too. Nonces are random 96-bit values, one per
file write; with at most a few million writes per key the collision probability is negligible (NIST
SP 800-38D bounds random nonces to 2^32 messages per key; rotate keys long before that).

Keys come from a key ring (file or environment variable, :mod:`fedinsight.privacy.keys`): new files
use the active key, files sealed under retired keys still open after a rotation.
"""

from __future__ import annotations

import io
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedinsight.core.errors import KeyFileError, TamperedDataError
from fedinsight.core.files import atomic_output_file
from fedinsight.privacy.keys import KeyRing, resolve_keyring

MAGIC = b"FDIENC1\n"
NONCE_BYTES = 12
TAG_BYTES = 16


def is_encrypted(blob: bytes) -> bool:
    """True if ``blob`` starts like a fedinsight-encrypted file (says nothing about authenticity)."""
    return blob.startswith(MAGIC)


def encrypt_bytes(data: bytes, ring: KeyRing, *, context: str = "") -> bytes:
    """Seal ``data`` under the ring's active key, bound to ``context``."""
    key = ring.active
    kid = key.key_id.encode("ascii")
    header = MAGIC + bytes([len(kid)]) + kid + secrets.token_bytes(NONCE_BYTES)
    nonce = header[-NONCE_BYTES:]
    return header + AESGCM(key.secret).encrypt(nonce, data, header + b"\x00" + context.encode())


def key_id_of(blob: bytes, *, where: str = "data") -> str:
    """The id of the key a blob was sealed with (from its header)."""
    if not is_encrypted(blob):
        raise TamperedDataError(f"{where} is not a fedinsight-encrypted file (no FDIENC1 header)")
    n = blob[len(MAGIC)] if len(blob) > len(MAGIC) else 0
    end = len(MAGIC) + 1 + n
    if n == 0 or len(blob) < end + NONCE_BYTES + TAG_BYTES:
        raise TamperedDataError(f"{where} is truncated: its encryption header is incomplete")
    try:
        return blob[len(MAGIC) + 1:end].decode("ascii")
    except UnicodeDecodeError as exc:
        raise TamperedDataError(f"{where} has a damaged encryption header") from exc


def decrypt_bytes(blob: bytes, ring: KeyRing, *, context: str = "", where: str = "data") -> bytes:
    """Open a blob sealed by :func:`encrypt_bytes`; any change to it raises TamperedDataError."""
    kid = key_id_of(blob, where=where)
    key = ring.get(kid)
    if key is None:
        raise KeyFileError(
            f"{where} was encrypted with key '{kid}', which is not in the key ring {ring.source} "
            f"(it holds {', '.join(k.key_id for k in ring.keys)}); restore the ring file that has it, "
            f"or restore the file if its header was modified"
        )
    header_end = len(MAGIC) + 1 + len(kid) + NONCE_BYTES
    header = blob[:header_end]
    try:
        return AESGCM(key.secret).decrypt(header[-NONCE_BYTES:], blob[header_end:], header + b"\x00" + context.encode())
    except InvalidTag as exc:
        raise TamperedDataError(
            f"{where} failed authentication: it was modified, truncated or stored under another name "
            f"(context '{context}'); do not use it -- restore it from a backup or recompute it"
        ) from exc


def write_encrypted(path: str | Path, data: bytes, ring: KeyRing, *, context: str | None = None) -> Path:
    """Encrypt ``data`` to ``path`` atomically (mode 0600). ``context`` defaults to the file name."""
    path = Path(path)
    blob = encrypt_bytes(data, ring, context=path.name if context is None else context)
    with atomic_output_file(path) as tmp:
        tmp.write_bytes(blob)
        os.chmod(tmp, 0o600)
    return path


def read_encrypted(path: str | Path, ring: KeyRing, *, context: str | None = None) -> bytes:
    """Decrypt a file written by :func:`write_encrypted`; tampering raises TamperedDataError."""
    path = Path(path)
    if not path.is_file():
        raise TamperedDataError(f"{path} does not exist (an encrypted artifact was expected there)")
    return decrypt_bytes(path.read_bytes(), ring, context=path.name if context is None else context, where=str(path))


# --- typed helpers for what partners store -----------------------------------------------------------


def frame_to_bytes(frame: Any) -> bytes:
    """A pandas DataFrame as Parquet bytes (features, scores, caches)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def frame_from_bytes(data: bytes) -> Any:
    import pandas as pd

    return pd.read_parquet(io.BytesIO(data))


def state_dict_to_bytes(state: dict[str, Any]) -> bytes:
    """A torch state dict (checkpoints, embeddings) as bytes."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def state_dict_from_bytes(data: bytes) -> dict[str, Any]:
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)  # never unpickle arbitrary objects


def arrays_to_bytes(arrays: dict[str, Any]) -> bytes:
    """Named numpy arrays (embeddings, scores) as ``.npz`` bytes."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def arrays_from_bytes(data: bytes) -> dict[str, Any]:
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def encryption_keyring(file: str | Path | None = None, *, env_var: str | None = None) -> KeyRing:
    """The encryption key ring from ``file``, or from ``env_var``/``$FEDINSIGHT_ENCRYPTION_KEY``."""
    return resolve_keyring("encryption", file=file, env_var=env_var)

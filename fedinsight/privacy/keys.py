"""Partner-held secret keys: generation, rotation and loading of key rings.

Why key *rings* and not single keys: rotating a key must not orphan what was made with the old one.
An encrypted artifact names the key it was sealed with, and the erasure register holds keyed tokens
of forgotten customers; both must keep working after a rotation. So a ring holds one **active** key
(used for everything new) and any number of **retired** keys (used only to open or recognise what the
old keys made). Secrets never leave the ring file and are never printed; key ids are random labels.

A key comes either from a ring file (JSON, mode 0600, written atomically) or from an environment
variable holding one base64-encoded 32-byte key (for container secrets). Files readable by group or
others are refused: a world-readable tokenization key would let anyone on the machine re-identify
tokens by hashing candidate ids.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from fedinsight.core.errors import KeyFileError

KeyKind = Literal["tokenization", "collaboration", "encryption"]
KEY_KINDS: tuple[str, ...] = ("tokenization", "collaboration", "encryption")
KEY_BYTES = 32
RING_FORMAT = 1
ENV_VARS: dict[str, str] = {kind: f"FEDINSIGHT_{kind.upper()}_KEY" for kind in KEY_KINDS}
"""Default environment variable per kind, e.g. ``FEDINSIGHT_ENCRYPTION_KEY`` (base64 of 32 bytes)."""

_ID_PREFIX = {"tokenization": "tk", "collaboration": "ck", "encryption": "ek"}


@dataclass(frozen=True)
class SecretKey:
    """One key of a ring. ``secret`` is excluded from ``repr`` so it cannot end up in a log line."""

    key_id: str
    secret: bytes = field(repr=False)
    created: str
    status: Literal["active", "retired"] = "active"


@dataclass(frozen=True)
class KeyRing:
    """The keys of one kind: exactly one active, any number retired (oldest first)."""

    kind: str
    keys: tuple[SecretKey, ...]
    source: str

    @property
    def active(self) -> SecretKey:
        return next(k for k in self.keys if k.status == "active")

    @property
    def retired(self) -> tuple[SecretKey, ...]:
        return tuple(k for k in self.keys if k.status == "retired")

    def get(self, key_id: str) -> SecretKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    @property
    def fingerprint(self) -> str:
        """Changes whenever the ring changes; derived from key ids only, never from secrets."""
        ids = ",".join(f"{k.key_id}:{k.status}" for k in self.keys)
        return hashlib.sha256(f"{self.kind}|{ids}".encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _new_key(kind: str) -> SecretKey:
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return SecretKey(f"{_ID_PREFIX[kind]}-{stamp}-{secrets.token_hex(4)}", secrets.token_bytes(KEY_BYTES), _now())


def _check_kind(kind: str) -> None:
    if kind not in KEY_KINDS:
        raise KeyFileError(f"unknown key kind '{kind}', expected one of {', '.join(KEY_KINDS)}")


def _serialise(ring: KeyRing) -> bytes:
    doc = {
        "fedinsight-keyring": RING_FORMAT,
        "kind": ring.kind,
        "keys": [
            {"id": k.key_id, "created": k.created, "status": k.status, "secret": base64.b64encode(k.secret).decode()}
            for k in ring.keys
        ],
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def _write_private(path: Path, payload: bytes, *, exclusive: bool) -> bool:
    """Write ``payload`` to ``path`` with mode 0600 atomically. With ``exclusive``, never replace a file.

    Returns False when ``exclusive`` and the file already exists (someone else created it first).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # atomic create-if-absent
            except FileExistsError:
                return False
            return True
        os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def generate_keyring(path: str | Path, kind: str, *, overwrite: bool = False) -> KeyRing:
    """Create a new ring with one fresh active key at ``path`` (mode 0600). Refuses to replace a ring."""
    _check_kind(kind)
    path = Path(path)
    if path.exists() and not overwrite:
        raise KeyFileError(
            f"{path} already exists; replacing a key makes every token and encrypted file made with it "
            f"unusable. Use 'fedinsight partner keys rotate {path}' instead"
        )
    ring = KeyRing(kind, (_new_key(kind),), str(path))
    _write_private(path, _serialise(ring), exclusive=False)
    return ring


def ensure_keyring(path: str | Path, kind: str) -> KeyRing:
    """Load the ring at ``path``, creating it first if absent (safe when several processes race)."""
    _check_kind(kind)
    path = Path(path)
    if not path.exists():
        ring = KeyRing(kind, (_new_key(kind),), str(path))
        _write_private(path, _serialise(ring), exclusive=True)
    return load_keyring(path, kind)


def rotate_keyring(path: str | Path) -> KeyRing:
    """Make a new active key; the previous active key becomes retired (still opens/recognises old data)."""
    ring = load_keyring(path)
    fresh = _new_key(ring.kind)
    keys = tuple(SecretKey(k.key_id, k.secret, k.created, "retired") for k in ring.keys) + (fresh,)
    rotated = KeyRing(ring.kind, keys, str(path))
    _write_private(Path(path), _serialise(rotated), exclusive=False)
    return rotated


def load_keyring(path: str | Path, kind: str | None = None) -> KeyRing:
    """Read and check a ring file: mode 0600 (no group/other access), well-formed, one active key."""
    path = Path(path)
    if not path.is_file():
        hint = kind or "tokenization"
        raise KeyFileError(
            f"key file {path} does not exist; create it with 'fedinsight partner keys generate --kind {hint} "
            f"--out {path}' (or restore it from your backup)"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(f"key file {path} is readable by other users (mode {mode:o}); run 'chmod 600 {path}'")
    try:
        doc = json.loads(path.read_text())
        if doc.get("fedinsight-keyring") != RING_FORMAT:
            raise ValueError("not a fedinsight key ring")
        keys = tuple(
            SecretKey(str(k["id"]), base64.b64decode(k["secret"], validate=True), str(k["created"]), k["status"])
            for k in doc["keys"]
        )
        ring_kind = str(doc["kind"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise KeyFileError(f"key file {path} is damaged or not a fedinsight key ring ({type(exc).__name__})") from exc
    if any(len(k.secret) != KEY_BYTES for k in keys) or [k.status for k in keys].count("active") != 1:
        raise KeyFileError(f"key file {path} is damaged: expected 32-byte keys and exactly one active key")
    if any(k.status not in ("active", "retired") for k in keys):
        raise KeyFileError(f"key file {path} is damaged: key status must be active or retired")
    if kind is not None and ring_kind != kind:
        raise KeyFileError(f"key file {path} holds a {ring_kind} key, but a {kind} key is needed here")
    return KeyRing(ring_kind, keys, str(path))


def keyring_from_env(var: str, kind: str) -> KeyRing | None:
    """A one-key ring from environment variable ``var`` (base64 of 32 bytes), or None if it is unset."""
    _check_kind(kind)
    value = os.environ.get(var)
    if value is None or not value.strip():
        return None
    try:
        secret = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        try:
            secret = base64.urlsafe_b64decode(value.strip())
        except (binascii.Error, ValueError) as exc:
            raise KeyFileError(f"${var} is not base64; generate one with 'fedinsight partner keys generate'") from exc
    if len(secret) != KEY_BYTES:
        raise KeyFileError(f"${var} must hold a base64-encoded {KEY_BYTES}-byte key (got {len(secret)} bytes)")
    # The id is a keyed digest of the secret: stable across restarts, reveals nothing usable about it.
    key_id = f"{_ID_PREFIX[kind]}-env-{hashlib.sha256(b'fedinsight-key-id|' + secret).hexdigest()[:8]}"
    return KeyRing(kind, (SecretKey(key_id, secret, "env"),), f"${var}")


def new_env_key() -> str:
    """A fresh base64 key suitable for a ``FEDINSIGHT_*_KEY`` environment variable."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def resolve_keyring(
    kind: str,
    *,
    file: str | Path | None = None,
    env_var: str | None = None,
    default_file: str | Path | None = None,
) -> KeyRing:
    """Find a ring: an explicit ``file``; else ``env_var`` (or ``FEDINSIGHT_<KIND>_KEY``) if set; else
    ``default_file``, created on first use; else a KeyFileError saying how to provide one.

    An explicit file that is missing is an error, never silently replaced: a new tokenization key
    would change every token, a new encryption key would make stored artifacts unreadable.
    """
    _check_kind(kind)
    if file is not None:
        return load_keyring(file, kind)
    for var in (env_var, ENV_VARS[kind]):
        if var is not None and (ring := keyring_from_env(var, kind)) is not None:
            return ring
    if env_var is not None:
        raise KeyFileError(f"${env_var} is not set; it must hold the base64 {kind} key")
    if default_file is not None:
        return ensure_keyring(default_file, kind)
    raise KeyFileError(
        f"no {kind} key: pass a key file, or set ${ENV_VARS[kind]} "
        f"(create one with 'fedinsight partner keys generate --kind {kind} --out FILE')"
    )

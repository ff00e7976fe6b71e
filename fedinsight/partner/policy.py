"""A partner's protection policy (``protection.toml``): what happens to each column, where its keys are, how
consent is read.

Why a module of its own: the policy is configuration the partner writes and reviews, read by the pandas
pipeline (:mod:`fedinsight.partner.protection`), the engine's scans, the vault, erasure requests and the CLI.
Reading it strictly lives here once: unknown sections or keys are refused (a typo must not weaken it) and
``customer_id`` can only be tokenized.

Without a policy file (simulation, quick trials) :func:`default_policy` applies: schema columns keep their
defaults (ids tokenized, the rest kept), keys are created on first use in ``<data>/.fedinsight``, consent is
required, and undeclared personal data still stops the load.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fedinsight.core.errors import ProtectionPolicyError
from fedinsight.privacy.consent import MISSING_CONSENT, PURPOSES
from fedinsight.privacy.keys import KeyRing, resolve_keyring

Action = Literal["drop", "tokenize", "keep"]
ACTIONS: tuple[str, ...] = ("drop", "tokenize", "keep")
POLICY_FILE = "protection.toml"
STATE_DIR = ".fedinsight"
CUSTOMER_KEY = "customer_id"


@dataclass(frozen=True)
class KeySource:
    """Where a key ring comes from: a file, or an environment variable holding one base64 key."""

    file: Path | None = None
    env: str | None = None


@dataclass(frozen=True)
class ProtectionPolicy:
    """A partner's declared handling of its data. Load it with :func:`load_policy`."""

    columns: Mapping[str, Action] = field(default_factory=dict)  # "table.column" or "column" -> action
    state_dir: Path = Path(STATE_DIR)
    tokenization: KeySource = KeySource()
    encryption: KeySource = KeySource()
    collaboration: KeySource | None = None
    consent_column: str = "consent"
    consent_purposes: Mapping[str, str] = field(default_factory=dict)
    missing_consent: str = "deny"
    undeclared: Action = "keep"  # for undeclared columns that do *not* look like personal data
    source: Path | None = None  # None: the built-in default policy
    auto_keys: bool = False  # create missing keys in the state folder (the default policy only)

    def declared(self, table: str, column: str) -> Action | None:
        """The action the policy declares for a column (``table.column`` beats ``column``)."""
        return self.columns.get(f"{table}.{column}", self.columns.get(column))

    @property
    def register_url(self) -> str:
        return f"sqlite:///{self.state_dir / 'partner.db'}"

    @property
    def fingerprint(self) -> str:
        """Identifies the policy's content (changes when any declaration changes)."""
        doc = {
            "columns": dict(sorted(self.columns.items())),
            "keys": [str(self.tokenization), str(self.encryption), str(self.collaboration)],
            "consent": [self.consent_column, dict(sorted(self.consent_purposes.items())), self.missing_consent],
            "undeclared": self.undeclared,
            "state": str(self.state_dir),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def tokenization_ring(self) -> KeyRing:
        return _ring("tokenization", self.tokenization, self)

    def encryption_ring(self) -> KeyRing:
        return _ring("encryption", self.encryption, self)

    def collaboration_ring(self) -> KeyRing | None:
        return None if self.collaboration is None else _ring("collaboration", self.collaboration, self)


def _ring(kind: str, source: KeySource, policy: ProtectionPolicy) -> KeyRing:
    default = policy.state_dir / "keys" / f"{kind}.key" if policy.auto_keys else None
    return resolve_keyring(kind, file=source.file, env_var=source.env, default_file=default)


def default_policy(data_folder: str | Path) -> ProtectionPolicy:
    """The built-in policy for a partner folder without ``protection.toml``."""
    return ProtectionPolicy(state_dir=Path(data_folder) / STATE_DIR, auto_keys=True)


_SECTIONS = {
    "partner": {"state-dir", "undeclared-columns"},
    "keys": {"tokenization-file", "tokenization-env", "encryption-file", "encryption-env", "collaboration-file",
             "collaboration-env"},
    "consent": {"column", "missing", "purposes"},
    "columns": None,
}


def _bad(path: Path, message: str) -> ProtectionPolicyError:
    return ProtectionPolicyError(f"protection policy {path}: {message}")


def load_policy(path: str | Path) -> ProtectionPolicy:
    """Read and check a ``protection.toml``. Unknown sections/keys are refused: a typo must not weaken it."""
    path = Path(path)
    if not path.is_file():
        raise ProtectionPolicyError(
            f"protection policy {path} does not exist; write one with 'fedinsight partner init --data FOLDER'"
        )
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _bad(path, f"is not valid TOML ({exc})") from exc
    for section, value in doc.items():
        if section not in _SECTIONS:
            raise _bad(path, f"unknown section [{section}] (known: {', '.join(_SECTIONS)})")
        allowed = _SECTIONS[section]
        if not isinstance(value, dict):
            raise _bad(path, f"[{section}] must be a table")
        if allowed is not None and (unknown := sorted(set(value) - allowed)):
            known = ", ".join(sorted(allowed))
            raise _bad(path, f"unknown key(s) {', '.join(unknown)} in [{section}] (known: {known})")
    base = path.parent
    partner, keys, consent = doc.get("partner", {}), doc.get("keys", {}), doc.get("consent", {})
    columns: dict[str, Action] = {}
    for name, action in doc.get("columns", {}).items():
        if action not in ACTIONS:
            raise _bad(path, f"column '{name}' has action {action!r}; use one of {', '.join(ACTIONS)}")
        if name.split(".")[-1] == CUSTOMER_KEY and action != "tokenize":
            raise _bad(path, f"'{name}' = \"{action}\" is not allowed: customer ids are always tokenized")
        columns[name] = action

    def source(kind: str) -> KeySource | None:
        file, env = keys.get(f"{kind}-file"), keys.get(f"{kind}-env")
        if file is not None and env is not None:
            raise _bad(path, f"give either {kind}-file or {kind}-env, not both")
        if file is None and env is None:
            return None
        return KeySource(file=(base / str(file)) if file is not None else None, env=env)

    missing = consent.get("missing", "deny")
    if missing not in MISSING_CONSENT:
        raise _bad(path, f"[consent] missing must be one of {', '.join(MISSING_CONSENT)} (got {missing!r})")
    purposes = consent.get("purposes", {})
    if not isinstance(purposes, dict) or (unknown := sorted(set(purposes) - set(PURPOSES))):
        raise _bad(path, f"[consent.purposes] may only name {', '.join(PURPOSES)}")
    undeclared = partner.get("undeclared-columns", "keep")
    if undeclared not in ("keep", "drop"):
        raise _bad(path, f"[partner] undeclared-columns must be keep or drop (got {undeclared!r})")
    tokenization, encryption = source("tokenization"), source("encryption")
    if tokenization is None or encryption is None:
        raise _bad(path, "[keys] must name tokenization-file (or -env) and encryption-file (or -env)")
    return ProtectionPolicy(
        columns=columns,
        state_dir=base / str(partner.get("state-dir", STATE_DIR)),
        tokenization=tokenization,
        encryption=encryption,
        collaboration=source("collaboration"),
        consent_column=str(consent.get("column", "consent")),
        consent_purposes={str(k): str(v) for k, v in purposes.items()},
        missing_consent=missing,
        undeclared=undeclared,
        source=path,
    )


def find_policy(data_folder: str | Path, explicit: str | Path | None = None) -> ProtectionPolicy:
    """``explicit`` if given, else ``<data_folder>/protection.toml`` if present, else the default policy."""
    if explicit is not None:
        return load_policy(explicit)
    candidate = Path(data_folder) / POLICY_FILE
    return load_policy(candidate) if candidate.is_file() else default_policy(data_folder)

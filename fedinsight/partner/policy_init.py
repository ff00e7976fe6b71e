"""``fedinsight partner init``: a partner's first protection policy and its keys.

Why a module of its own: setting a partner up happens once, before any job, and writes files -- a
``protection.toml`` declaring every column that looks like personal data as ``drop`` (the partner reviews it)
and the tokenization and encryption keys in the private state folder. The protection pipeline only ever reads
what this writes. :func:`init_federation` does the same for every partner folder of a simulation, whose planted
identifiers are known.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fedinsight.core.errors import ProtectionPolicyError
from fedinsight.core.files import private_dir, write_private
from fedinsight.data.mapping import has_mapping
from fedinsight.data.validate import table_for_path
from fedinsight.partner.folder_pii import folder_findings
from fedinsight.partner.policy import CUSTOMER_KEY, POLICY_FILE, STATE_DIR
from fedinsight.partner.protection import source_note
from fedinsight.privacy.keys import generate_keyring, resolve_keyring
from fedinsight.privacy.pii import PiiFinding


def starter_policy(findings: list[PiiFinding], *, keys_dir: str = f"{STATE_DIR}/keys",
                   state_dir: str = STATE_DIR, collaboration: bool = False,
                   sources: Mapping[str, Mapping[str, str]] | None = None,
                   sampled: Mapping[str, tuple[int, int]] | None = None) -> str:
    """TOML text for a new policy: every detected identifier column is declared ``drop``. ``sources`` (a mapped
    partner's ``meta["columns"]``: table -> canonical -> source column) names the partner's own column in a comment.
    ``sampled``: table -> (rows checked, rows held) for tables checked on part of their rows, said in the header so
    the partner knows to review the columns by hand."""
    lines = [
        "# fedinsight partner protection policy (docs/privacy.md). Every column that looks like personal",
        "# data must be declared here: drop | tokenize | keep. customer_id is always tokenized.",
    ]
    for table, (checked, held) in sorted((sampled or {}).items()):
        lines += [f"# The personal-data check read {checked:,} of the {held:,} rows of {table} (row groups spread",
                  "# over the table, its first and last included): a column holding personal data only in rows it",
                  "# did not read is not listed below. Review the columns by hand."]
    lines += [
        "",
        "[partner]",
        f'state-dir = "{state_dir}"          # erasure register and encrypted artifacts',
        'undeclared-columns = "keep"        # undeclared columns that do NOT look like personal data',
        "",
        "[keys]                              # files must be mode 0600; or use *-env = \"VAR\" (base64 key)",
        f'tokenization-file = "{keys_dir}/tokenization.key"',
        f'encryption-file = "{keys_dir}/encryption.key"',
    ]
    if collaboration:
        lines.append(f'collaboration-file = "{keys_dir}/collaboration.key"   # shared by all partners')
    lines += [
        "",
        "[consent]",
        'column = "consent"                  # consent_<purpose> columns override it per purpose',
        'missing = "deny"                    # customers without consent information are not used',
        "",
        "[columns]",
    ]
    for f in sorted(findings, key=lambda f: f.where):
        if f.column == CUSTOMER_KEY:
            continue
        lines.append(f'"{f.where}" = "drop"   # {source_note(f, sources)}{f.describe()}')
    return "\n".join(lines) + "\n"


def init_partner(data_folder: str | Path, *, collaboration_key: str | Path | None = None,
                 overwrite: bool = False, mapping: str | Path | None = None) -> tuple[Path, list[PiiFinding]]:
    """Write ``<data_folder>/protection.toml`` (detected identifiers -> drop) and create its keys. The data is read
    through the partner's mapping (``mapping``, else ``<data_folder>/mapping.toml`` if present): columns it does
    not map keep the partner's own names (``"transactions.邮箱" = "drop"``)."""
    folder = Path(data_folder)
    path = folder / POLICY_FILE
    if path.exists() and not overwrite:
        raise ProtectionPolicyError(f"{path} already exists (edit it, or pass --overwrite to replace it)")
    findings, sampled, sources = folder_findings(folder, mapping=mapping)
    private_dir(folder / STATE_DIR)  # keys, the erasure register and the partner's ledger live here
    keys = private_dir(folder / STATE_DIR / "keys")
    for kind in ("tokenization", "encryption"):
        if not (keys / f"{kind}.key").exists():
            generate_keyring(keys / f"{kind}.key", kind)
    if collaboration_key is not None:
        ring = resolve_keyring("collaboration", file=collaboration_key)
        target = keys / "collaboration.key"
        if not target.exists():
            write_private(target, Path(ring.source).read_bytes())
    path.write_text(starter_policy(findings, collaboration=collaboration_key is not None, sources=sources,
                                   sampled=sampled), encoding="utf-8")
    return path, findings


def init_federation(root: str | Path) -> list[Path]:
    """:func:`init_partner` in every partner folder under ``root`` that has no policy yet.

    For simulations of data fedinsight generated itself (built-in datasets, ``data synth``): the
    identifier columns it planted are declared ``drop``. Real partners run ``partner init`` and review.
    """
    written = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        holds_tables = has_mapping(folder) or any(table_for_path(f) for f in folder.iterdir() if f.is_file())
        if holds_tables and not (folder / POLICY_FILE).exists():  # e.g. a generator's ground_truth/ is not a partner
            written.append(init_partner(folder)[0])
    return written

"""Which of a partner's own columns reaches a customer (e-mail, phone), read on the partner for its target lists.

Why this exists: a target list is useless without a way to contact the customer, and the contact is exactly
the personal data the protection pipeline drops before any task sees it. So it is read here, from the
partner's own files through its own mapping, on its own machine, only to write the partner's own file; it is
never part of the data view's tables and never sent anywhere.

Which column, when the partner does not say (``--contact COLUMN``): the PII scan's findings
(:mod:`fedinsight.privacy.pii`) or the customer id itself when its values are contacts (a shop keyed by e-mail,
a retailer keyed by member mobile number): any e-mail before any phone; for one kind, the customers table
before the order lines and the campaign log, and a separate column before the id. When nothing is
known the list carries ids only, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.federation import load_partner_folder
from fedinsight.data.schema import SCHEMA_COLUMNS, PartnerData
from fedinsight.partner.view import PartnerView
from fedinsight.privacy.pii import scan_tables
from fedinsight.privacy.pii_values import CHECKS
from fedinsight.privacy.tokenize import Tokenizer

KEY = "customer_id"
KINDS = ("email", "phone")  # preference order
TABLE_ORDER = ("customers", "transactions", "events", "interactions")
ID_SHARE = 0.9  # of sampled ids that must look like the kind for the id itself to be the contact
ID_SAMPLE = 500


@dataclass(frozen=True)
class Contacts:
    """One contact per customer token (empty when ``source`` is None: no contact column known)."""

    source: str | None  # "transactions.邮箱", "customer_id (Email)", or None
    by_token: dict[str, str] = field(default_factory=dict)

    def of(self, tokens: pd.Series) -> pd.Series:
        return pd.Series(tokens).astype(str).map(self.by_token).astype("string")


def _own_name(raw: PartnerData, table: str, column: str) -> str:
    """The partner's own name of a mapped column (``Email`` for customer_id), else the column's name."""
    columns = raw.meta.get("columns")
    source = columns.get(table, {}).get(column) if isinstance(columns, dict) else None
    return str(source) if source else column


def _named(raw: PartnerData, name: str) -> tuple[str, str]:
    """(table, column) of a column the partner names, by its name in the data or its own export header."""
    tables = raw.tables()
    for table in TABLE_ORDER:
        frame = tables.get(table)
        if frame is None:
            continue
        if name in frame.columns:  # type: ignore[union-attr]
            return table, name
        for column in frame.columns:  # type: ignore[union-attr]
            if _own_name(raw, table, str(column)) == name:
                return table, str(column)
    known = sorted({_own_name(raw, t, str(c)) for t, f in tables.items() if f is not None
                    for c in f.columns})  # type: ignore[union-attr]
    raise ConfigError(f"--contact '{name}' is not a column of this partner's data; its columns: {', '.join(known)}")


def _id_kind(raw: PartnerData) -> str | None:
    """``email`` or ``phone`` when the customer ids themselves are contacts, else None."""
    for table in TABLE_ORDER:
        frame = raw.tables().get(table)
        if frame is None or KEY not in frame.columns:  # type: ignore[union-attr]
            continue
        ids = pd.unique(frame[KEY].dropna().astype(str).to_numpy())[:ID_SAMPLE]  # type: ignore[index]
        if len(ids) == 0:
            return None
        for kind in KINDS:
            if sum(CHECKS[kind](v) is not None for v in ids) >= ID_SHARE * len(ids):
                return kind
        return None
    return None


def choose_contact(raw: PartnerData, column: str | None = None) -> tuple[str, str] | None:
    """(table, column) that holds each customer's contact, or None when none is known (see the module docstring)."""
    if column is not None:
        return _named(raw, column)
    findings = [f for f in scan_tables(raw.tables(), schema=SCHEMA_COLUMNS)  # type: ignore[arg-type]
                if f.kind in KINDS and f.table in TABLE_ORDER]
    id_kind = _id_kind(raw)
    for kind in KINDS:
        for table in TABLE_ORDER:
            hits = [f for f in findings if f.kind == kind and f.table == table]
            if hits:
                return table, hits[0].column
        if id_kind == kind:
            return "customers" if raw.customers is not None else "transactions", KEY
    return None


def _per_customer(frame: pd.DataFrame, column: str) -> pd.Series:
    """The latest non-empty value of ``column`` per customer id (by timestamp when the table has one)."""
    if column == KEY:
        ids = frame[KEY].dropna().astype(str).drop_duplicates()
        return pd.Series(ids.to_numpy(), index=ids.to_numpy())
    part = frame[[KEY, column] + (["timestamp"] if "timestamp" in frame.columns else [])].copy()
    part[column] = part[column].astype("string").str.strip()
    part = part[part[column].notna() & part[column].ne("")]
    if "timestamp" in part.columns:
        part = part.sort_values("timestamp", kind="stable")
    last = part.drop_duplicates(KEY, keep="last")
    return pd.Series(last[column].to_numpy(), index=last[KEY].astype(str).to_numpy())


def resolve_contacts(view: PartnerView, column: str | None = None) -> Contacts:
    """Every customer's contact from the partner's own files (read here, on the partner), keyed by token."""
    raw = next(iter(load_partner_folder(view.folder, mapping=view.mapping.path if view.mapping else None).values()))
    where = choose_contact(raw, column)
    if where is None:
        return Contacts(None)
    table, name = where
    frame = getattr(raw, table)
    if frame is None or KEY not in frame.columns:
        raise ConfigError(f"--contact: table {table} has no customer id, so its {name} cannot reach a customer")
    values = _per_customer(frame, name)
    tokens = Tokenizer(view.policy.tokenization_ring()).tokenize(pd.Series(values.index, dtype="string"))
    label = f"{name} ({_own_name(raw, table, name)})" if name == KEY else f"{table}.{name}"
    return Contacts(label, dict(zip(tokens.astype(str), values.astype(str), strict=True)))

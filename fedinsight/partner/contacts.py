"""Which of a partner's own columns reaches a customer (e-mail, phone), read on the partner for its target lists.

Why this exists: a target list is useless without a way to contact the customer, and the contact is exactly
the personal data the protection pipeline drops before any task sees it. So it is read here, from the
partner's own files through its own mapping, on its own machine, only to write the partner's own file; it is
never part of the data view's tables and never sent anywhere. It is read by the partner's engine
(:meth:`PartnerView.raw_columns`, :meth:`PartnerView.latest_values`): no table is loaded whole.

Which column, when the partner does not say (``--contact COLUMN``): the PII findings of the engine's sample of
each raw table (the same first rows the protection check reads) or the customer id itself when its values are
contacts (a shop keyed by e-mail, a retailer keyed by member mobile number): any e-mail before any phone; for one
kind, the customers table before the order lines and the campaign log, and a separate column before the id. When
nothing is known the list carries ids only, and says so. Why the sample's findings and not the protection
policy's declarations: a declaration says what to do with a column (drop, tokenize, keep), not what it holds, so
it cannot put an e-mail before a phone; the findings say the kind, and they are the check every read of the
partner already runs (memoized: choosing costs no extra pass). Unlike the whole-table scan this replaced, a
column whose first rows hold no contact is not found: name it with ``--contact``.

Which value, per customer: the latest non-empty one by timestamp; among values at the same latest time (or in a
table without time) the largest. The rule it replaced, "the last such row in the file", depended on the order an
export happened to be written in, which no engine reproduces; both engines compute this one identically.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.mapping import PartnerMapping
from fedinsight.partner.engine.relations import RawColumns
from fedinsight.partner.view import PartnerView
from fedinsight.privacy.pii_values import CHECKS

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


def _own_name(mapping: PartnerMapping | None, table: str, column: str) -> str:
    """The partner's own name of a mapped column (``Email`` for customer_id), else the column's name."""
    if mapping is None or table not in mapping.tables:
        return column
    return mapping.tables[table].source(column)


def _named(raw: RawColumns, mapping: PartnerMapping | None, name: str) -> tuple[str, str]:
    """(table, column) of a column the partner names, by its name in the data or its own export header."""
    for table in TABLE_ORDER:
        columns = raw.columns.get(table)
        if columns is None:
            continue
        if name in columns:
            return table, name
        for column in columns:
            if _own_name(mapping, table, column) == name:
                return table, column
    known = sorted({_own_name(mapping, t, c) for t, columns in raw.columns.items() for c in columns})
    raise ConfigError(f"--contact '{name}' is not a column of this partner's data; its columns: {', '.join(known)}")


def _id_kind(raw: RawColumns) -> str | None:
    """``email`` or ``phone`` when the customer ids themselves are contacts (judged on the first
    :data:`ID_SAMPLE` distinct ids of the first table's sample that has ids), else None."""
    for table in TABLE_ORDER:
        if table not in raw.ids:
            continue
        ids = raw.ids[table][:ID_SAMPLE]
        if len(ids) == 0:
            return None
        for kind in KINDS:
            if sum(CHECKS[kind](v) is not None for v in ids) >= ID_SHARE * len(ids):
                return kind
        return None
    return None


def choose_contact(raw: RawColumns, mapping: PartnerMapping | None = None,
                   column: str | None = None) -> tuple[str, str] | None:
    """(table, column) that holds each customer's contact, or None when none is known (see the module docstring)."""
    if column is not None:
        return _named(raw, mapping, column)
    findings = [f for f in raw.findings if f.kind in KINDS and f.table in TABLE_ORDER]
    id_kind = _id_kind(raw)
    for kind in KINDS:
        for table in TABLE_ORDER:
            hits = [f for f in findings if f.kind == kind and f.table == table]
            if hits:
                return table, hits[0].column
        if id_kind == kind:
            return "customers" if "customers" in raw.columns else "transactions", KEY
    return None


def resolve_contacts(view: PartnerView, column: str | None = None, tokens: Iterable[str] | None = None) -> Contacts:
    """Every customer's contact from the partner's own files (read by its engine, on the partner), keyed by token;
    with ``tokens`` (a list's customers) only theirs are kept: nobody else's contact stays in memory."""
    raw = view.raw_columns()
    where = choose_contact(raw, view.mapping, column)
    if where is None:
        return Contacts(None)
    table, name = where
    if KEY not in raw.columns.get(table, []):
        raise ConfigError(f"--contact: table {table} has no customer id, so its {name} cannot reach a customer")
    values = view.latest_values(table, name)
    if tokens is not None:
        values = values[values[KEY].isin(set(map(str, tokens)))]
    label = f"{name} ({_own_name(view.mapping, table, name)})" if name == KEY else f"{table}.{name}"
    return Contacts(label, dict(zip(values[KEY].astype(str), values["own_value"].astype(str), strict=True)))

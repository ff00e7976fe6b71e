"""The pandas path a target list's contacts were read by before the engine (whole tables loaded by the validating
reader), kept as the reference of ``tests/unit/partner/engine/test_engine_contacts.py`` and
``benchmarks/contacts_engine.py``: verbatim but for the two rules the engine changed (:func:`pandas_contacts`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.federation import load_partner_folder
from fedinsight.data.schema import SCHEMA_COLUMNS, PartnerData
from fedinsight.partner.view import PartnerView
from fedinsight.privacy.pii import scan_tables
from fedinsight.privacy.pii_values import CHECKS
from fedinsight.privacy.tokenize import Tokenizer


def _old_own_name(raw: PartnerData, table: str, column: str) -> str:
    columns = raw.meta.get("columns")
    source = columns.get(table, {}).get(column) if isinstance(columns, dict) else None
    return str(source) if source else column


def _old_choose(raw: PartnerData, column: str | None) -> tuple[str, str] | None:
    """``contacts.choose_contact`` as it was: whole tables scanned."""
    tables = raw.tables()
    order = ("customers", "transactions", "events", "interactions")
    if column is not None:
        for table in order:
            frame = tables.get(table)
            if frame is None:
                continue
            if column in frame.columns:
                return table, column
            for c in frame.columns:
                if _old_own_name(raw, table, str(c)) == column:
                    return table, str(c)
        known = sorted({_old_own_name(raw, t, str(c)) for t, f in tables.items() if f is not None for c in f.columns})
        raise ConfigError(f"--contact '{column}' is not a column of this partner's data; its columns: "
                          f"{', '.join(known)}")
    findings = [f for f in scan_tables(tables, schema=SCHEMA_COLUMNS)
                if f.kind in ("email", "phone") and f.table in order]
    id_kind = None
    for table in order:
        frame = tables.get(table)
        if frame is None or "customer_id" not in frame.columns:
            continue
        ids = pd.unique(frame["customer_id"].dropna().astype(str).to_numpy())[:500]
        id_kind = next((k for k in ("email", "phone") if len(ids) and
                        sum(CHECKS[k](v) is not None for v in ids) >= 0.9 * len(ids)), None)
        break
    for kind in ("email", "phone"):
        for table in order:
            hits = [f for f in findings if f.kind == kind and f.table == table]
            if hits:
                return table, hits[0].column
        if id_kind == kind:
            return "customers" if raw.customers is not None else "transactions", "customer_id"
    return None


def pandas_contacts(folder: Path, column: str | None = None) -> tuple[str | None, dict[str, str]]:
    """(source label, token -> contact) as the pandas path gave them, but with ids trimmed as the tokenizer trims
    (it kept ``"0010\\t"`` and ``"0010"`` apart, the last in a dict winning) and ties at the latest time broken by
    the largest value (it took the file's last row, which no engine reproduces)."""
    view = PartnerView(folder, "training")
    raw = next(iter(load_partner_folder(folder, mapping=view.mapping.path if view.mapping else None).values()))
    where = _old_choose(raw, column)
    if where is None:
        return None, {}
    table, name = where
    frame = getattr(raw, table)
    ids = frame["customer_id"].astype("string").str.strip()
    if name == "customer_id":
        values = ids.dropna().drop_duplicates()
        pairs = pd.DataFrame({"id": values, "value": values})
    else:
        pairs = pd.DataFrame({"id": ids, "value": frame[name].astype("string").str.strip()})
        if "timestamp" in frame.columns:
            pairs["timestamp"] = frame["timestamp"]
        pairs = pairs[pairs["value"].notna() & pairs["value"].ne("")]
        pairs = pairs.sort_values([c for c in ("timestamp", "value") if c in pairs.columns], kind="stable")
        pairs = pairs.drop_duplicates("id", keep="last")
    tokens = Tokenizer(view.policy.tokenization_ring()).tokenize(pairs["id"].astype("string"))
    label = f"{name} ({_old_own_name(raw, table, name)})" if name == "customer_id" else f"{table}.{name}"
    return label, dict(zip(tokens.astype(str), pairs["value"].astype(str), strict=True))

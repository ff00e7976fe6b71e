"""The partner-side protection pipeline: PII scan -> column policy -> tokenization -> consent/erasure.

Every read of partner data goes through here (:class:`fedinsight.partner.view.PartnerView`),
so no task ever sees a raw customer id, a phone number or a customer who did not consent:

1. **scan** every column of every table for direct identifiers (:mod:`fedinsight.privacy.pii`);
2. apply the partner's **column policy** (``protection.toml``): each column is ``drop``, ``tokenize``
   or ``keep``. A column that looks like personal data and is not declared stops the load with a
   :class:`~fedinsight.core.errors.PiiDetectedError` naming the column and an example pattern;
3. **tokenize** ``customer_id`` (always) and every declared key with HMAC-SHA256 under the partner's
   key (:mod:`fedinsight.privacy.tokenize`); the raw frames are dropped right after, nothing caches them;
4. keep only customers whose **consent** allows the job's purpose and who were not **forgotten**
   (:mod:`fedinsight.privacy.consent`), in every table.

Steps 1-3 are done once per process and cached (tokens only); step 4 runs on every call, so a
``fedinsight partner forget`` takes effect for the next job even on a long-running SuperNode.

The policy itself (``protection.toml``, or the built-in default without one) is read by
:mod:`fedinsight.partner.policy`; ``partner init`` writes it (:mod:`fedinsight.partner.policy_init`);
erasure requests are recorded by :mod:`fedinsight.partner.erasure`; what tasks derive from customers is
stored by :mod:`fedinsight.partner.vault`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fedinsight.core.errors import KeyFileError, PiiDetectedError, ProtectionPolicyError
from fedinsight.data.federation import load_partner_folder
from fedinsight.data.schema import SCHEMA_COLUMNS, TABLES, PartnerData
from fedinsight.partner.policy import CUSTOMER_KEY, Action, ProtectionPolicy, find_policy
from fedinsight.privacy.consent import PURPOSES, ErasureRegister, consent_mask, erasure_register
from fedinsight.privacy.pii import PiiFinding, scan_tables
from fedinsight.privacy.tokenize import Tokenizer

LINK_COLUMN = "customer_link"
SCHEMA_DEFAULTS: dict[str, Action] = {"customer_id": "tokenize", "transaction_id": "tokenize", "event_id": "tokenize"}
"""Schema columns with a default other than ``keep``. Row ids are tokenized: they can embed identifiers."""


# --- column decisions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnDecision:
    """What happens to one column and why."""

    table: str
    column: str
    action: Action
    reason: str  # "declared", "schema default", "undeclared"
    finding: PiiFinding | None = None


def source_note(finding: PiiFinding, sources: Mapping[str, Mapping[str, str]] | None) -> str:
    """``"source column X: "`` when a mapped partner's own column ``X`` holds ``finding``'s column, else ``""``."""
    source = (sources or {}).get(finding.table, {}).get(finding.column)
    return f"source column {source}: " if source else ""


def _pii_message(undeclared: list[PiiFinding], policy: ProtectionPolicy,
                 sources: Mapping[str, Mapping[str, str]] | None = None) -> str:
    where = policy.source or "a protection.toml in the partner's data folder ('fedinsight partner init')"
    details = "; ".join(source_note(f, sources) + f.describe() for f in undeclared)
    example = undeclared[0].where
    return (f"{len(undeclared)} undeclared column(s) look like personal data: {details}. Declare each in [columns] "
            f'of {where} as "drop", "tokenize" or "keep", e.g. "{example}" = "drop"')


def plan_columns(tables: Mapping[str, pd.DataFrame], policy: ProtectionPolicy,
                 sources: Mapping[str, Mapping[str, str]] | None = None) -> tuple[list[ColumnDecision],
                                                                            list[PiiFinding]]:
    """Decide every column's action; undeclared personal data raises PiiDetectedError (all at once). ``sources``
    (a mapped partner's ``meta["columns"]``) names the partner's own column of a mapped one in the message."""
    findings = scan_tables(dict(tables), schema=SCHEMA_COLUMNS)
    by_column = {(f.table, f.column): f for f in findings}
    consent_columns = {policy.consent_column, *policy.consent_purposes.values(),
                       *(f"{policy.consent_column}_{p}" for p in PURPOSES)}
    decisions: list[ColumnDecision] = []
    undeclared: list[PiiFinding] = []
    for table, frame in tables.items():
        spec = TABLES.get(table)
        for column in map(str, frame.columns):
            finding = by_column.get((table, column))
            declared = policy.declared(table, column)
            if column == CUSTOMER_KEY:
                decisions.append(ColumnDecision(table, column, "tokenize", "always", finding))
            elif declared is not None:
                decisions.append(ColumnDecision(table, column, declared, "declared", finding))
            elif finding is not None:
                undeclared.append(finding)
            elif spec is not None and column in spec.column_names:
                decisions.append(ColumnDecision(table, column, SCHEMA_DEFAULTS.get(column, "keep"), "schema default"))
            elif table == "customers" and column in consent_columns:
                decisions.append(ColumnDecision(table, column, "keep", "consent"))  # the purpose filter needs it
            else:
                decisions.append(ColumnDecision(table, column, policy.undeclared, "undeclared"))
    if undeclared:
        raise PiiDetectedError(_pii_message(undeclared, policy, sources))
    return decisions, findings


# --- the pipeline ----------------------------------------------------------------------------------------


@dataclass
class ProtectedPartner:
    """A partner's tables after scan, column policy and tokenization -- before the purpose filter.

    ``customer_tokens`` lists every customer once (active-key tokens); ``retired_tokens`` holds the same
    customers' tokens under each retired key, aligned, so erasures recorded before a key rotation
    still match. Holds no raw ids.
    """

    data: PartnerData
    policy: ProtectionPolicy
    key_id: str
    customer_tokens: np.ndarray
    retired_tokens: dict[str, np.ndarray]
    decisions: list[ColumnDecision]
    findings: list[PiiFinding]

    def erased(self, register: ErasureRegister) -> set[str]:
        """Active-key tokens of this partner's customers that were forgotten."""
        return erased_among(register, self.policy, self.key_id, self.customer_tokens, self.retired_tokens)

    def for_purpose(self, purpose: str | None, register: ErasureRegister | None = None) -> PartnerData:
        """The tables restricted to customers who consent to ``purpose`` (None: every purpose) and are
        not forgotten. ``meta['protection']`` says what was removed (it stays on the partner)."""
        register = register or erasure_register(self.policy.register_url)
        data = self.data
        erased = self.erased(register)
        mask = consent_mask(data.customers, purpose, column=self.policy.consent_column,  # type: ignore[arg-type]
                            purpose_columns=self.policy.consent_purposes, missing=self.policy.missing_consent)
        if mask is None:
            consenting = set(self.customer_tokens) if self.policy.missing_consent == "allow" else set()
        else:
            consenting = set(data.customers.loc[mask.to_numpy(), CUSTOMER_KEY])  # type: ignore[union-attr]
        allowed = consenting - erased
        allowed_set = pa.array(sorted(allowed), type=pa.large_string())
        out = PartnerData(partner_id=data.partner_id, meta=dict(data.meta))
        for name, frame in data.tables().items():
            assert isinstance(frame, pd.DataFrame)
            if CUSTOMER_KEY in frame.columns:
                frame = frame.loc[_isin(frame[CUSTOMER_KEY], allowed_set)].reset_index(drop=True)
            setattr(out, name, frame)
        out.meta["protection"] = {
            "policy": self.policy.fingerprint,
            "purpose": purpose or "all",
            "token_key": self.key_id,
            "dropped": [f"{d.table}.{d.column}" for d in self.decisions if d.action == "drop"],
            "tokenized": [f"{d.table}.{d.column}" for d in self.decisions if d.action == "tokenize"],
            "customers_loaded": int(len(self.customer_tokens)),
            "excluded_no_consent": int(len(set(self.customer_tokens) - consenting)),
            "excluded_erased": int(len(erased & consenting)),
            "customers_used": int(len(allowed)),
        }
        return out


def erased_among(register: ErasureRegister, policy: ProtectionPolicy, key_id: str, customer_tokens: np.ndarray,
                 retired_tokens: Mapping[str, np.ndarray]) -> set[str]:
    """Which of ``customer_tokens`` (active key ``key_id``; the same customers' tokens under each retired key in
    ``retired_tokens``, aligned) were forgotten. Shared by the pandas view and the engine's scope."""
    known = {key_id, *retired_tokens}
    if missing := sorted(register.key_ids() - known):
        raise KeyFileError(
            f"the erasure register in {policy.state_dir} lists customers under key(s) {', '.join(missing)} "
            f"that the tokenization ring no longer holds: restore the key file (without it forgotten customers "
            f"cannot be recognised and no job may run)"
        )
    erased = register.erased_tokens(key_id) & set(customer_tokens)
    for retired, tokens in retired_tokens.items():
        old = register.erased_tokens(retired)
        if old:
            hit = np.fromiter((t in old for t in tokens), dtype=bool, count=len(tokens))
            erased.update(customer_tokens[hit])
    return erased


def _isin(values: pd.Series, allowed: pa.Array) -> np.ndarray:
    """``values.isin(allowed)`` done by Arrow (pandas' string isin boxes every value: ~10x slower)."""
    column = pa.array(values.astype("string").array, from_pandas=True).cast(pa.large_string())
    return np.asarray(pc.is_in(column, value_set=allowed).fill_null(False), dtype=bool)


def customer_ids(raw: PartnerData) -> pd.Series:
    """Every customer id of a partner's raw tables, once (its customers table's, else the union of the others')."""
    if raw.customers is not None:
        return raw.customers[CUSTOMER_KEY]  # type: ignore[index]
    parts = [getattr(raw, t)[CUSTOMER_KEY] for t in ("transactions", "interactions", "events")
             if getattr(raw, t) is not None]
    return pd.Series(pd.unique(pd.concat(parts).to_numpy()) if parts else [], dtype="string")


def protect(raw: PartnerData, policy: ProtectionPolicy) -> ProtectedPartner:
    """Scan, apply the column policy and tokenize. ``raw`` is not modified; drop it afterwards."""
    tables = {name: frame for name, frame in raw.tables().items()}
    sources = raw.meta.get("columns")
    decisions, findings = plan_columns(tables, policy, sources if isinstance(sources, dict) else None)  # type: ignore[arg-type]
    tokenizer = Tokenizer(policy.tokenization_ring(), policy.collaboration_ring(), memo=True)
    out = PartnerData(partner_id=raw.partner_id, meta=dict(raw.meta))
    actions = {(d.table, d.column): d.action for d in decisions}
    for name, frame in tables.items():
        assert isinstance(frame, pd.DataFrame)
        result = {}
        for column in map(str, frame.columns):
            action = actions[(name, column)]
            if action == "drop":
                continue
            if action == "tokenize":
                result[column] = tokenizer.tokenize(frame[column], namespace=column)
                if column == CUSTOMER_KEY and name == "customers" and tokenizer.collaboration is not None:
                    result[LINK_COLUMN] = tokenizer.link_tokenize(frame[column])
            else:
                result[column] = frame[column]
        setattr(out, name, pd.DataFrame(result, index=frame.index))
    raw_ids = customer_ids(raw).astype("string")
    active = tokenizer.tokenize(raw_ids).to_numpy(dtype=object)
    retired = {k.key_id: tokenizer.tokenize(raw_ids, key_id=k.key_id).to_numpy(dtype=object)
               for k in tokenizer.ring.retired}
    return ProtectedPartner(out, policy, tokenizer.key_id, active, retired, decisions, findings)


def load_protected(folder: str | Path, policy: ProtectionPolicy | None = None, *,
                   mapping: str | Path | None = None) -> ProtectedPartner:
    """Read (through the partner's mapping, if it has one), validate and protect one partner's folder (nothing raw
    outlives this call)."""
    policy = policy or find_policy(folder)
    partners = load_partner_folder(folder, mapping=mapping)
    if len(partners) != 1:
        raise ProtectionPolicyError(f"{folder} holds {len(partners)} partners' data; point at one partner's folder")
    return protect(next(iter(partners.values())), policy)

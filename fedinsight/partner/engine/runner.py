"""One scan, start to end: open the partner's engine, protect its tables in it, run the scan, tokenize the result.

The engine lives for one scan (DuckDB's spill folder is removed with it, even when the scan fails: no
half-written state); the partner's raw ids never leave this function -- a result's ``customer_id`` column is
replaced by the partner's tokens, exactly those the pandas view gives the same customers.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from fedinsight.core.errors import DataValidationError
from fedinsight.federation.scan import Scan
from fedinsight.partner.engine.base import Engine
from fedinsight.partner.engine.relations import (
    RawColumns,
    latest_values,
    prepare,
    raw_columns,
    raw_ids,
    schema,
    type_problems,
)
from fedinsight.partner.engine.settings import EngineSettings, open_engine
from fedinsight.partner.engine.sources import Source
from fedinsight.partner.policy import CUSTOMER_KEY, ProtectionPolicy
from fedinsight.privacy.consent import ErasureRegister
from fedinsight.privacy.tokenize import Tokenizer


def run_scan(scan: Scan, sources: Mapping[str, Source], settings: EngineSettings, policy: ProtectionPolicy,
             purpose: str | None, register: ErasureRegister, *, rate: float = 1.0,
             temp_root: Path | None = None) -> pd.DataFrame:
    """``scan``'s result over the partner's in-scope customers, ids tokenized (see the module docstring)."""
    return run_scans([scan], sources, settings, policy, purpose, register, rate=rate, temp_root=temp_root)[0]


def run_scans(scans: Sequence[Scan], sources: Mapping[str, Source], settings: EngineSettings,
              policy: ProtectionPolicy, purpose: str | None, register: ErasureRegister, *, rate: float = 1.0,
              temp_root: Path | None = None) -> list[pd.DataFrame]:
    """Several scans over one preparation of the partner's tables (the PII check, consent and erasure are done
    once): scans that number customers (``ROW_NUMBER() OVER (ORDER BY customer_id)``) see the same numbering."""
    temp = (temp_root or policy.state_dir) / "engine-tmp" / uuid.uuid4().hex[:12]
    results = []
    # one memo for the scope's tokens and the results': a customer's HMAC is computed once (at 5 M customers the
    # second pass was as long as the scan itself). Without erasures the scope tokenizes nobody, and a memo of
    # millions of ids would only hold memory (~1 GB at 5 M customers)
    several = sum(1 for scan in scans if not scan.drop_ids) > 1
    tokenizer = Tokenizer(policy.tokenization_ring(), memo=several or bool(register.key_ids()))
    with open_engine(settings, temp) as engine:
        prepare(engine, sources, policy, purpose, register, rate, tokenizer)
        for scan in scans:
            results.append(engine.query(_kept(engine, scan), (CUSTOMER_KEY,) if scan.drop_ids else ()))
    for scan, result in zip(scans, results, strict=True):
        if CUSTOMER_KEY in result.columns:
            if scan.drop_ids:
                del result[CUSTOMER_KEY]
            else:
                result[CUSTOMER_KEY] = tokenizer.tokenize(result[CUSTOMER_KEY].astype("string")).to_numpy(dtype=object)
    return results


def _kept(engine: Engine, scan: Scan) -> str:
    """``scan``'s SQL, narrowed to its ``keep`` columns when it names some (selected in the engine, so the others
    are never read or materialised)."""
    if not scan.keep:
        return scan.sql
    engine.create_view("scan_result", scan.sql)
    columns = [c for c in engine.columns("scan_result") if c in scan.keep or c == CUSTOMER_KEY]
    return "SELECT " + ", ".join(f'"{c}"' for c in columns) + " FROM scan_result"


def run_schema(sources: Mapping[str, Source], settings: EngineSettings, policy: ProtectionPolicy, *,
               temp_root: Path | None = None) -> dict[str, list[str]]:
    """The partner's canonical tables and the columns its protected tables hold (:func:`.relations.schema`)."""
    temp = (temp_root or policy.state_dir) / "engine-tmp" / uuid.uuid4().hex[:12]
    with open_engine(settings, temp) as engine:
        return schema(engine, sources, policy)


def run_type_check(sources: Mapping[str, Source], settings: EngineSettings, policy: ProtectionPolicy, *,
                   temp_root: Path | None = None) -> None:
    """DataValidationError when a typed column holds a value that does not parse (:func:`.relations.type_problems`)."""
    temp = (temp_root or policy.state_dir) / "engine-tmp" / uuid.uuid4().hex[:12]
    with open_engine(settings, temp) as engine:
        problems = type_problems(engine, sources, policy)
    if problems:
        raise DataValidationError(problems)


def run_raw_ids(sources: Mapping[str, Source], settings: EngineSettings, policy: ProtectionPolicy, *,
                temp_root: Path | None = None) -> pd.Series:
    """The partner's own customer ids, once each (:func:`.relations.raw_ids`): on the partner only."""
    temp = (temp_root or policy.state_dir) / "engine-tmp" / uuid.uuid4().hex[:12]
    with open_engine(settings, temp) as engine:
        return raw_ids(engine, sources)


def run_raw_columns(sources: Mapping[str, Source], settings: EngineSettings, policy: ProtectionPolicy, *,
                    temp_root: Path | None = None) -> RawColumns:
    """The raw tables' headers, the PII sample's findings and its ids (:func:`.relations.raw_columns`)."""
    temp = (temp_root or policy.state_dir) / "engine-tmp" / uuid.uuid4().hex[:12]
    with open_engine(settings, temp) as engine:
        return raw_columns(engine, sources, policy)


def run_latest_values(sources: Mapping[str, Source], settings: EngineSettings, policy: ProtectionPolicy,
                      table: str, column: str, *, temp_root: Path | None = None) -> pd.DataFrame:
    """Each customer's latest non-empty value of one raw column (:func:`.relations.latest_values`), ids tokenized
    like every result's. On the partner only, for its own files (the contact column of a target list)."""
    temp = (temp_root or policy.state_dir) / "engine-tmp" / uuid.uuid4().hex[:12]
    with open_engine(settings, temp) as engine:
        values = latest_values(engine, sources, table, column)
    tokens = Tokenizer(policy.tokenization_ring()).tokenize(values[CUSTOMER_KEY].astype("string"))
    values[CUSTOMER_KEY] = tokens.to_numpy(dtype=object)
    return values

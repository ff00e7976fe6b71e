"""One scan, start to end: open the partner's engine, protect its tables in it, run the scan, tokenize the result.

The engine lives for one scan (DuckDB's spill folder is removed with it, even when the scan fails: no
half-written state); the partner's raw ids never leave this function -- a result's ``customer_id`` column is
replaced by the partner's tokens, exactly those the pandas view gives the same customers.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from fedinsight.federation.scan import Scan
from fedinsight.partner.engine.relations import prepare
from fedinsight.partner.engine.settings import EngineSettings, open_engine
from fedinsight.partner.engine.sources import Source
from fedinsight.partner.protection import CUSTOMER_KEY, ProtectionPolicy
from fedinsight.privacy.consent import ErasureRegister
from fedinsight.privacy.tokenize import Tokenizer


def run_scan(scan: Scan, sources: Mapping[str, Source], settings: EngineSettings, policy: ProtectionPolicy,
             purpose: str | None, register: ErasureRegister, *, rate: float = 1.0,
             temp_root: Path | None = None) -> pd.DataFrame:
    """``scan``'s result over the partner's in-scope customers, ids tokenized (see the module docstring)."""
    temp = (temp_root or policy.state_dir) / "engine-tmp" / uuid.uuid4().hex[:12]
    with open_engine(settings, temp) as engine:
        prepare(engine, sources, policy, purpose, register, rate)
        result = engine.query(scan.sql)
    if CUSTOMER_KEY in result.columns:
        tokens = Tokenizer(policy.tokenization_ring(), memo=True).tokenize(result[CUSTOMER_KEY].astype("string"))
        result[CUSTOMER_KEY] = tokens.to_numpy(dtype=object)
    return result

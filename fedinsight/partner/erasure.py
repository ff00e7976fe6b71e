"""A partner's erasure requests (``fedinsight partner forget``): raw customer ids in, their tokens recorded.

Why a module of its own: a request arrives as the partner's *raw* customer ids (a text, CSV or Parquet list),
but the register must never hold them. So the ids are tokenized here under every key of the partner's
tokenization ring -- the active one and each retired one -- and only those tokens are recorded, which lets the
protection pipeline and the engine recognise a forgotten customer before and after a key rotation.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fedinsight.core.errors import DataValidationError, Problem
from fedinsight.partner.policy import CUSTOMER_KEY, ProtectionPolicy
from fedinsight.privacy.consent import ErasureReceipt, erasure_register
from fedinsight.privacy.tokenize import Tokenizer


def forget_customers(ids: list[str], policy: ProtectionPolicy, *, note: str = "") -> ErasureReceipt:
    """Record an erasure request for raw ``ids`` (tokens under every key of the ring are stored)."""
    tokenizer = Tokenizer(policy.tokenization_ring())
    series = pd.Series(ids, dtype="string")
    tokens = {k.key_id: list(tokenizer.tokenize(series, key_id=k.key_id)) for k in tokenizer.ring.keys}
    return erasure_register(policy.register_url).record(tokens, note=note)


def read_customer_list(path: str | Path) -> list[str]:
    """Customer ids from a text file (one per line, optional ``customer_id`` header) or a CSV/Parquet
    table with a ``customer_id`` column."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(Problem(str(path), "file does not exist (expected customer ids, one per line)"))
    if path.suffix.lower() == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix.lower() == ".csv" and "," in path.read_text().splitlines()[0]:
        frame = pd.read_csv(path, dtype=str)
    else:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if lines and lines[0].lower() == CUSTOMER_KEY:
            lines = lines[1:]
        return lines
    if CUSTOMER_KEY not in frame.columns:
        raise DataValidationError(Problem(str(path), f"needs a '{CUSTOMER_KEY}' column", column=CUSTOMER_KEY))
    return [str(v).strip() for v in frame[CUSTOMER_KEY].dropna()]

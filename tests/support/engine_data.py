"""A partner's own files for the engine tests: odd ids, consent flags as yes/1/true/no, opted-out and erased customers.

Amounts are whole quarters (k / 4): every sum of them is exact in binary floating point, whatever the order,
so the pandas path (float sums) and the engines (exact decimal sums) must agree to the last bit -- an equality
test on them cannot pass by luck or fail by rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

OPTED_OUT = ("0007", "0011")
ERASED = ("0003", " 0005")  # one with a stray space: erasure and joins trim ids, as the tokenizer does


def _padded(k: int, value: str) -> str:
    """Some ids as exports write them: a stray space, a tab, an ideographic space (U+3000); all one customer."""
    return f" {value}" if k % 17 == 0 else f"{value}\t" if k % 23 == 0 else f"\u3000{value}" if k % 29 == 0 else value


def own_tables(customers: int = 60, seed: int = 3) -> dict[str, pd.DataFrame]:
    """customers / transactions / events of one partner (ids with leading zeros, consent as yes/no/blank)."""
    rng = np.random.default_rng(seed)
    ids = [f"{i:04d}" for i in range(1, customers + 1)]
    consent = rng.choice(np.array(["yes", "1", "true", "no"], dtype=object), customers, p=[0.4, 0.3, 0.2, 0.1])
    consent[[ids.index(c) for c in OPTED_OUT]] = "no"
    consent[ids.index("0002")] = "yes"
    cust = pd.DataFrame({"customer_id": ids, "consent": consent, "region": rng.choice(["north", "south"], customers),
                         "age": rng.integers(18, 80, customers).astype(str)})
    n_tx = customers * 12
    who = rng.choice(ids, n_tx)
    when = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 900 * 86_400, n_tx), unit="s")
    tx = pd.DataFrame({"transaction_id": [f"T{i}" for i in range(n_tx)],
                       "customer_id": [_padded(k, w) for k, w in enumerate(who)],
                       "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S"),
                       "amount": rng.integers(1, 4_000, n_tx) / 4.0,
                       "quantity": rng.integers(1, 5, n_tx),
                       "channel": rng.choice(["store", "app"], n_tx)})
    n_ev = customers * 5
    ev_when = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 400 * 86_400, n_ev), unit="s")
    ev = pd.DataFrame({"event_id": [f"E{i}" for i in range(n_ev)], "customer_id": rng.choice(ids, n_ev),
                       "timestamp": ev_when.strftime("%Y-%m-%d %H:%M:%S"),
                       "campaign": rng.choice(["spring sale", "vip"], n_ev),
                       "channel": rng.choice(["sms", "mail"], n_ev),
                       "stage": rng.choice(["exposure", "click", "participate", "convert", " Click", "CONVERT\u00a0"],
                                           n_ev, p=[0.25, 0.2, 0.2, 0.2, 0.1, 0.05])})
    return {"customers": cust, "transactions": tx, "events": ev}


TIED = "0010"  # two rows at its latest time, the smaller e-mail last in the file (one of them with a tab after the id)
BLANK = "0012"  # its latest row's e-mail is blank: the one before counts


def contact_tables(customers: int = 120) -> dict[str, pd.DataFrame]:
    """:func:`own_tables` with an e-mail on every order line (changing over time) and a phone per customer."""
    tables = own_tables(customers=customers)
    tx = tables["transactions"]
    ids = tx["customer_id"].str.strip()
    tx["e_mail"] = [f"{c}.{k % 4}@shop.example" for k, c in enumerate(ids)]
    cust = tables["customers"]
    cust["phone"] = [f"1380000{i:04d}" if i % 9 else "" for i in range(len(cust))]
    latest = pd.to_datetime(tx["timestamp"]).max()
    later = (latest + pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    extra = pd.DataFrame({"transaction_id": ["X1", "X2", "X3"], "customer_id": [f"{TIED}\t", TIED, BLANK],
                          "timestamp": [later] * 3, "amount": [1.0] * 3, "quantity": [1] * 3,
                          "channel": ["app"] * 3, "e_mail": [f"b.{TIED}@shop.example", f"a.{TIED}@shop.example", " "]})
    tables["transactions"] = pd.concat([tx, extra], ignore_index=True)
    return tables


def write_csv_partner(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


class EngineOnly:
    """A partner whose tables cannot be loaded into pandas: only its engine answers (what a task's engine path may
    use of a partner: its scans, its tables' columns and its time zone)."""

    partner_id = "shop"

    def __init__(self, view: Any) -> None:
        self.view = view

    def scans(self, scans):  # noqa: ANN001, ANN201
        return self.view.scans(scans)

    def scan(self, scan):  # noqa: ANN001, ANN201
        return self.view.scan(scan)

    def columns(self):  # noqa: ANN201
        return self.view.columns()

    def timezone(self) -> str:
        return self.view.timezone

    def identities(self, tokens):  # noqa: ANN001, ANN201
        return self.view.identities(tokens)

    def data(self):  # noqa: ANN201
        raise AssertionError("the engine path must not load the partner's tables")


def own_interactions(tables: dict[str, pd.DataFrame], seed: int = 5) -> pd.DataFrame:
    """Interactions of ``tables``' customers: repeats of one item, several items at one instant (the split's ties),
    padded ids, and items outside a catalogue of ``I000``-``I039`` (``X...``)."""
    rng = np.random.default_rng(seed)
    ids = list(tables["customers"]["customer_id"])
    rows = []
    for k, cid in enumerate(ids):
        stamps = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 200 * 86_400, 6)), unit="s")
        for j, item in enumerate(rng.choice(40, 6, replace=False)):
            rows.append((_padded(k + j, cid), f"I{item:03d}", stamps[j]))
        tied = rng.choice(40, 3, replace=False)  # three items at the customer's latest instant
        for item in tied:
            rows.append((cid, f"I{item:03d}", stamps[-1] + pd.Timedelta(hours=1)))
        rows.append((cid, rows[-6][1], stamps[0]))  # a repeat, earlier than its first time
        if k % 7 == 0:
            rows.append((cid, f"X{k:03d}", stamps[-1] + pd.Timedelta(days=1)))  # outside the catalogue, and latest
    frame = pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp"])
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    return frame
